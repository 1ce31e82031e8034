//! The apiserver driven by unmodified kubectl (1.32 and Debian's 1.20), over a three-member
//! `bosun store`: create, apply, get (tables, wide, yaml, json, watch), describe, scale, label,
//! annotate, the three patch types, delete, events, configmaps and secrets, conflicts,
//! validation errors, 404s,
//! pagination, finalizers, graceful pod deletion and pod logs.

use std::time::Duration;

use bosun_tests::kube::{
    Apiserver, Kubectl, curl, curl_post_json, kubectl_120, kubectl_132, kubectl_default,
};
use bosun_tests::{Cluster, Kind, wait_for};
use serde_json::Value;

/// A three-member store and an apiserver over all three members.
async fn setup(dir: &std::path::Path, extra: &[&str]) -> (Cluster, Apiserver) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let endpoints = cluster.client_urls().join(",");
    let api = Apiserver::start(&dir.join("api"), &endpoints, extra).await;
    (cluster, api)
}

/// Asserts that `v` is a failure `Status` with this code and reason.
fn assert_status(v: &Value, code: i64, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(
        (v["code"].as_i64(), v["reason"].as_str()),
        (Some(code), Some(reason)),
        "{v}"
    );
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n        command: [sleep, \"3600\"]\n        ports:\n        - containerPort: 8080\n"
    )
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\n  labels: {role: solo}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    command: [sleep, \"3600\"]\n";

/// The commands of the issue, one kubectl version, in its own namespace.
async fn kubectl_workflow(k: &Kubectl, endpoints: &str) {
    let ns = format!("ns-{}", k.version.replace('.', "-"));
    let n = ["-n", ns.as_str()];
    let with_ns = |args: &[&str]| -> Vec<String> {
        args.iter().chain(n.iter()).map(|s| s.to_string()).collect()
    };
    let run = |args: &[&str]| {
        let a = with_ns(args);
        k.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run_stdin = |args: &[&str], input: &str| {
        let a = with_ns(args);
        k.run_with(&a.iter().map(String::as_str).collect::<Vec<_>>(), input)
    };
    println!("kubectl {} at {}", k.version, k.bin.display());

    // kubectl's generators: 1.32 sends these as protobuf, 1.20 as JSON.
    assert_eq!(
        k.run(&["create", "namespace", &ns]).ok().trim(),
        format!("namespace/{ns} created")
    );
    assert_eq!(
        run(&[
            "create",
            "deployment",
            "gen",
            "--image=busybox:1.36",
            "--replicas=2",
            "--port=80"
        ])
        .ok()
        .trim(),
        "deployment.apps/gen created"
    );
    let generated: Value =
        serde_json::from_str(run(&["get", "deploy", "gen", "-o", "json"]).ok()).unwrap();
    assert_eq!(generated["spec"]["replicas"], 2);
    assert_eq!(generated["spec"]["selector"]["matchLabels"]["app"], "gen");
    let c = &generated["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (c["image"].as_str(), c["ports"][0]["containerPort"].as_i64()),
        (Some("busybox:1.36"), Some(80))
    );
    assert_eq!(
        run(&["delete", "deploy", "gen"]).ok().trim(),
        "deployment.apps \"gen\" deleted"
    );
    let nsl = k.run(&["get", "namespaces"]).ok().to_string();
    assert_eq!(
        words(nsl.lines().next().unwrap()),
        ["NAME", "STATUS", "AGE"]
    );
    assert!(
        nsl.lines()
            .any(|l| words(l)[..2] == [ns.as_str(), "Active"]),
        "{nsl}"
    );

    // ConfigMaps and Secrets from kubectl's generators (1.32 sends protobuf).
    assert_eq!(
        run(&[
            "create",
            "configmap",
            "app",
            "--from-literal=mode=fast",
            "--from-literal=level=3"
        ])
        .ok()
        .trim(),
        "configmap/app created"
    );
    let cms = run(&["get", "cm"]).ok().to_string();
    assert_eq!(words(cms.lines().next().unwrap()), ["NAME", "DATA", "AGE"]);
    assert!(cms.lines().any(|l| words(l)[..2] == ["app", "2"]), "{cms}");
    assert_eq!(
        run(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret"
        ])
        .ok()
        .trim(),
        "secret/db created"
    );
    let secrets = run(&["get", "secrets", "--field-selector", "type=Opaque"])
        .ok()
        .to_string();
    assert_eq!(
        words(secrets.lines().next().unwrap()),
        ["NAME", "TYPE", "DATA", "AGE"]
    );
    assert!(
        secrets
            .lines()
            .any(|l| words(l)[..3] == ["db", "Opaque", "1"]),
        "{secrets}"
    );
    assert_eq!(
        run(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]).ok(),
        "czNjcmV0"
    );
    let described = run(&["describe", "secret", "db"]).ok().to_string();
    assert!(
        described.contains("Type:  Opaque") && described.contains("password:  6 bytes"),
        "{described}"
    );
    let described = run(&["describe", "cm", "app"]).ok().to_string();
    assert!(described.contains("mode:\n----\nfast"), "{described}");
    let bad = run_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a/b: x\n",
    );
    assert!(
        bad.err().contains("The ConfigMap \"bad\" is invalid: data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters"),
        "{}",
        bad.stderr
    );
    assert_eq!(
        run(&["delete", "cm", "app"]).ok().trim(),
        "configmap \"app\" deleted"
    );
    assert_eq!(
        run(&["delete", "secret", "db"]).ok().trim(),
        "secret \"db\" deleted"
    );

    // explain reads the OpenAPI v3 documents (kubectl 1.20 only knows v2, which is empty).
    if k.version != "1.20" {
        let out = k
            .run(&["explain", "deployment.spec.replicas"])
            .ok()
            .to_string();
        assert!(
            out.contains("GROUP:      apps") && out.contains("FIELD: replicas <integer>"),
            "{out}"
        );
        let out = k.run(&["explain", "pods"]).ok().to_string();
        assert!(out.contains("Pod is a collection of containers"), "{out}");
    }

    // create -f
    let out = run_stdin(
        &["create", "-f", "-"],
        &deployment("web", 2, "busybox:1.36"),
    );
    assert_eq!(out.ok().trim(), "deployment.apps/web created");
    assert_eq!(
        run_stdin(&["create", "-f", "-"], POD).ok().trim(),
        "pod/solo created"
    );
    let dup = run_stdin(&["create", "-f", "-"], POD);
    assert!(
        dup.err().contains("Error from server (AlreadyExists)")
            && dup.stderr.contains("pods \"solo\" already exists"),
        "{}",
        dup.stderr
    );

    // get: tables with the familiar columns.
    let out = run(&["get", "deployments"]).ok().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(words(lines[1])[..4], ["web", "0/2", "0", "0"]);
    let out = run(&["get", "deploy", "-o", "wide"]).ok().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(words(lines[1])[5..], ["main", "busybox:1.36", "app=web"]);
    let out = run(&["get", "pods"]).ok().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(words(lines[1])[..4], ["solo", "0/1", "Pending", "0"]);
    let out = run(&["get", "po", "-o", "wide"]).ok().to_string();
    assert_eq!(
        words(out.lines().next().unwrap()),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    let out = run(&["get", "deploy", "web", "-o", "yaml"])
        .ok()
        .to_string();
    for want in [
        "kind: Deployment",
        "name: web",
        "generation: 1",
        "resourceVersion:",
        "uid:",
        "strategy:",
        "type: RollingUpdate",
        "imagePullPolicy: IfNotPresent",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    let json: Value =
        serde_json::from_str(run(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["spec"]["replicas"], 2);
    assert_eq!(json["metadata"]["namespace"], ns.as_str());
    let rv1: i64 = json["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // get -w: the table, then a line per change.
    let wdir = tempfile::tempdir().unwrap();
    let wfile = wdir.path().join(format!("watch-{}", k.version));
    let watch = k.spawn(
        &with_ns(&["get", "deploy", "web", "-w"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &wfile,
    );
    wait_for(
        "get -w prints the table",
        Duration::from_secs(20),
        || async { watch.output().lines().count() >= 2 },
    )
    .await;

    // scale
    assert_eq!(
        run(&["scale", "deploy", "web", "--replicas=4"]).ok().trim(),
        "deployment.apps/web scaled"
    );
    wait_for(
        "get -w shows the scale",
        Duration::from_secs(20),
        || async {
            watch
                .output()
                .lines()
                .any(|l| words(l).get(1) == Some(&"0/4"))
        },
    )
    .await;
    drop(watch);
    let json: Value =
        serde_json::from_str(run(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["spec"]["replicas"], 4);
    assert_eq!(
        json["metadata"]["generation"], 2,
        "a spec change bumps the generation"
    );
    assert!(
        json["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv1
    );

    // label, annotate (metadata only: the generation stays)
    assert_eq!(
        run(&["label", "deploy", "web", "tier=front"]).ok().trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        run(&["annotate", "deploy", "web", "note=hello"])
            .ok()
            .trim(),
        "deployment.apps/web annotated"
    );
    let out = run(&["get", "deploy", "-l", "tier=front", "--show-labels"])
        .ok()
        .to_string();
    assert!(out.contains("app=web,tier=front"), "{out}");
    assert!(
        run(&["get", "deploy", "-l", "tier notin (front)"])
            .stderr
            .contains("No resources found")
    );
    let json: Value =
        serde_json::from_str(run(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["metadata"]["annotations"]["note"], "hello");
    assert_eq!(json["metadata"]["generation"], 2);

    // patch: json, merge, strategic
    assert_eq!(
        run(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#
        ])
        .ok()
        .trim(),
        "deployment.apps/web patched"
    );
    assert_eq!(
        run(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":null,"team":"a"}}}"#
        ])
        .ok()
        .trim(),
        "deployment.apps/web patched"
    );
    assert_eq!(run(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:1.37"}]}}}}"#]).ok().trim(), "deployment.apps/web patched");
    let json: Value =
        serde_json::from_str(run(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["spec"]["replicas"], 3);
    assert_eq!(
        json["metadata"]["labels"],
        serde_json::json!({"app": "web", "team": "a"})
    );
    let c = &json["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (c["image"].as_str(), c["ports"][0]["containerPort"].as_i64()),
        (Some("busybox:1.37"), Some(8080)),
        "strategic merge keeps the other fields"
    );
    let bad = run(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/nothing"}]"#,
    ]);
    assert!(
        bad.err().to_lowercase().contains("invalid"),
        "{}",
        bad.stderr
    );

    // apply twice with a change, then once unchanged.
    assert_eq!(
        run_stdin(&["apply", "-f", "-"], &deployment("api", 1, "busybox:1.36"))
            .ok()
            .trim(),
        "deployment.apps/api created"
    );
    assert_eq!(
        run_stdin(&["apply", "-f", "-"], &deployment("api", 2, "busybox:1.37"))
            .ok()
            .trim(),
        "deployment.apps/api configured"
    );
    assert_eq!(
        run_stdin(&["apply", "-f", "-"], &deployment("api", 2, "busybox:1.37"))
            .ok()
            .trim(),
        "deployment.apps/api unchanged"
    );
    let json: Value =
        serde_json::from_str(run(&["get", "deploy", "api", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["spec"]["replicas"], 2);
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(json["metadata"]["generation"], 2);
    assert!(
        json["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // describe
    let out = run(&["describe", "deploy", "web"]).ok().to_string();
    for want in [
        "Name:",
        "web",
        "Replicas:",
        "3 desired",
        "StrategyType:",
        "RollingUpdate",
        "busybox:1.37",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    let out = run(&["describe", "pod", "solo"]).ok().to_string();
    for want in ["Name:", "solo", "Status:", "Pending", "busybox:1.36"] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }

    // events
    // describe finds a pod's events by involvedObject name, namespace, kind and uid.
    let uid = run(&["get", "pod", "solo", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: solo.1\ninvolvedObject:\n  kind: Pod\n  name: solo\n  namespace: {ns}\n  uid: {uid}\nreason: Testing\nmessage: hello from the test\ntype: Normal\ncount: 1\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\nsource:\n  component: tester\n"
    );
    assert_eq!(
        run_stdin(&["create", "-f", "-"], &event).ok().trim(),
        "event/solo.1 created"
    );
    // Events expire: their keys carry a store lease.
    let key = format!("/registry/events/{ns}/solo.1");
    let (_, out, _) = bosun_tests::etcdctl(endpoints, &["get", &key, "-w", "json"], None);
    let kv: Value = serde_json::from_str(&out).unwrap();
    assert!(kv["kvs"][0]["lease"].as_i64().unwrap_or(0) != 0, "{out}");
    let out = run(&["get", "events"]).ok().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(
        lines[1].contains("Normal")
            && lines[1].contains("Testing")
            && lines[1].contains("pod/solo")
            && lines[1].contains("hello from the test"),
        "{out}"
    );
    let out = run(&["describe", "pod", "solo"]).ok().to_string();
    assert!(
        out.contains("Testing") && out.contains("hello from the test"),
        "describe lists the pod's events:\n{out}"
    );

    // a conflict: replace with a stale resourceVersion
    let mut stale: Value =
        serde_json::from_str(run(&["get", "deploy", "web", "-o", "json"]).ok()).unwrap();
    run(&["label", "deploy", "web", "bump=1"]).ok();
    stale["spec"]["replicas"] = 9.into();
    let out = run_stdin(&["replace", "-f", "-"], &stale.to_string());
    assert!(out.err().contains("Error from server (Conflict)") && out.stderr.contains("Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"), "{}", out.stderr);

    // a validation error
    let bad = deployment("bad", 1, "busybox").replace(
        "labels: {app: bad}\n    spec",
        "labels: {app: other}\n    spec",
    );
    let out = run_stdin(&["create", "-f", "-"], &bad);
    assert!(
        out.err().contains("The Deployment \"bad\" is invalid")
            && out
                .stderr
                .contains("spec.template.metadata.labels: Invalid value")
            && out
                .stderr
                .contains("`selector` does not match template `labels`"),
        "{}",
        out.stderr
    );
    let out = run_stdin(
        &["create", "-f", "-"],
        &POD.replace("solo", "noimage")
            .replace("    image: busybox:1.36\n", ""),
    );
    assert!(
        out.err()
            .contains("spec.containers[0].image: Required value"),
        "{}",
        out.stderr
    );

    // 404s
    let out = run(&["get", "deploy", "nope"]);
    assert!(
        out.err()
            .contains("Error from server (NotFound): deployments.apps \"nope\" not found"),
        "{}",
        out.stderr
    );
    let out = k.run(&["get", "pods", "-n", "no-such-namespace", "x"]);
    assert!(
        out.err().contains("Error from server (NotFound)"),
        "{}",
        out.stderr
    );
    let out = k.run_with(
        &["create", "-f", "-"],
        &POD.replace("name: solo", "name: lost\n  namespace: no-such-namespace"),
    );
    assert!(
        out.err()
            .contains("namespaces \"no-such-namespace\" not found"),
        "{}",
        out.stderr
    );

    // delete: the pod has no node, so it goes at once; then 404.
    assert_eq!(
        run(&["delete", "deploy", "web"]).ok().trim(),
        "deployment.apps \"web\" deleted"
    );
    assert_eq!(
        run(&["delete", "pod", "solo"]).ok().trim(),
        "pod \"solo\" deleted"
    );
    assert!(run(&["get", "deploy", "web"]).err().contains("NotFound"));
    let out = run(&["get", "deploy"]).ok().to_string();
    assert!(!out.contains("web ") && out.contains("api"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_132_and_120_drive_the_apiserver() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api) = setup(dir.path(), &[]).await;
    let mut ran = 0;
    for k in [
        kubectl_132(&api, dir.path()),
        kubectl_120(&api, dir.path()),
        kubectl_default(&api, dir.path()),
    ]
    .into_iter()
    .flatten()
    {
        kubectl_workflow(&k, &_cluster.endpoints()).await;
        ran += 1;
    }
    assert!(ran > 0, "no kubectl installed");
    // What kubectl stored is readable with etcdctl, as JSON under /registry.
    let (code, out, err) = bosun_tests::etcdctl(
        &_cluster.endpoints(),
        &["get", "--prefix", "/registry/deployments/", "--keys-only"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/registry/deployments/ns-1-"), "{out}");
    let (_, out, _) = bosun_tests::etcdctl(
        &_cluster.endpoints(),
        &["get", "/registry/namespaces/default", "--print-value-only"],
        None,
    );
    let ns: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ns["metadata"]["name"], "default");
}

/// Pagination with limit/continue, by kubectl (--chunk-size) and raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api) = setup(dir.path(), &[]).await;
    let k = kubectl_132(&api, dir.path())
        .or_else(|| kubectl_120(&api, dir.path()))
        .expect("a kubectl");
    for i in 0..7 {
        let pod = POD.replace("name: solo", &format!("name: p{i}"));
        k.run_with(&["create", "-f", "-"], &pod).ok();
    }
    let out = k
        .run(&["get", "pods", "--chunk-size=3", "-o", "name"])
        .ok()
        .to_string();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        (0..7).map(|i| format!("pod/p{i}")).collect::<Vec<_>>()
    );

    let get = |q: &str| -> Value {
        let (code, body) = curl(&[
            "-s",
            &format!("{}/api/v1/namespaces/default/pods?{q}", api.url),
        ]);
        assert_eq!(code, 0);
        serde_json::from_str(&body).unwrap()
    };
    let page1 = get("limit=3");
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    assert_eq!(page1["metadata"]["remainingItemCount"], 4);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // A write between pages does not show: the pages are read at the first page's revision.
    k.run_with(
        &["create", "-f", "-"],
        &POD.replace("name: solo", "name: p00"),
    )
    .ok();
    let page2 = get(&format!("limit=3&continue={token}"));
    let names: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p3", "p4", "p5"]);
    assert_eq!(
        page2["metadata"]["resourceVersion"],
        page1["metadata"]["resourceVersion"]
    );
    let token = page2["metadata"]["continue"].as_str().unwrap().to_string();
    let page3 = get(&format!("limit=3&continue={token}"));
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    assert!(page3["metadata"].get("continue").is_none());
    // Selectors filter across pages.
    let sel = get("limit=2&labelSelector=role%3Dsolo&fieldSelector=metadata.name%21%3Dp1");
    assert_eq!(sel["items"].as_array().unwrap().len(), 2);
    let bad = get("fieldSelector=spec.nothing%3Dx");
    assert_status(&bad, 400, "BadRequest");
    let bad = get("labelSelector=a%20in");
    assert_eq!(bad["code"], 400);

    // deletecollection with a selector deletes what matches, nothing else.
    k.run(&["label", "pod", "p1", "p2", "doomed=yes"]).ok();
    let (code, body) = curl(&[
        "-s",
        "-X",
        "DELETE",
        &format!(
            "{}/api/v1/namespaces/default/pods?labelSelector=doomed%3Dyes",
            api.url
        ),
    ]);
    assert_eq!(code, 0);
    let deleted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(deleted["kind"], "PodList");
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2);
    let left = k.run(&["get", "pods", "-o", "name"]).ok().to_string();
    assert!(
        !left.contains("pod/p1\n") && !left.contains("pod/p2\n") && left.contains("pod/p3"),
        "{left}"
    );

    // A body over --max-request-bytes (3 MiB) is refused with a Status, not stored.
    let big = dir.path().join("big.json");
    let filler = "a".repeat(4 << 20);
    std::fs::write(
        &big,
        format!("{{\"metadata\":{{\"name\":\"big\",\"annotations\":{{\"a\":\"{filler}\"}}}}}}"),
    )
    .unwrap();
    let (_, body) = curl_post_json(
        &format!("{}/api/v1/namespaces/default/pods", api.url),
        &format!("@{}", big.display()),
    );
    assert_status(
        &serde_json::from_str(&body).unwrap(),
        413,
        "RequestEntityTooLarge",
    );
}

/// Watch semantics over REST: resume from a version, bookmarks, timeoutSeconds, 410 after
/// compaction (as an ERROR event) and for an expired continue token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_watch_resume_bookmarks_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, api) = setup(
        dir.path(),
        &["--watch-bookmark-interval", "1", "--watch-cache-size", "5"],
    )
    .await;
    let k = kubectl_132(&api, dir.path())
        .or_else(|| kubectl_120(&api, dir.path()))
        .expect("a kubectl");
    let created: Value =
        serde_json::from_str(k.run_with(&["create", "-f", "-", "-o", "json"], POD).ok()).unwrap();
    let rv0 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    k.run(&["label", "pod", "solo", "x=1"]).ok();
    k.run(&["delete", "pod", "solo"]).ok();

    let watch = |q: &str| -> Vec<Value> {
        let (code, body) = curl(&[
            "-s",
            "-N",
            "--max-time",
            "10",
            &format!("{}/api/v1/namespaces/default/pods?watch=true&{q}", api.url),
        ]);
        assert!(code == 0 || code == 28, "curl exit {code}");
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // From the create's version: the label change, then the delete; the stream ends at the timeout.
    let evs = watch(&format!("resourceVersion={rv0}&timeoutSeconds=2"));
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "DELETED"]);
    assert_eq!(evs[0]["object"]["metadata"]["labels"]["x"], "1");
    // Bookmarks when allowed.
    let evs = watch(&format!(
        "resourceVersion={rv0}&timeoutSeconds=3&allowWatchBookmarks=true"
    ));
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK", "{evs:?}");
    assert_eq!(last["object"]["kind"], "Pod");
    let bookmark_rv: i64 = last["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let delete_rv: i64 = evs[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bookmark_rv >= delete_rv);

    // Push the first events out of the (5-event) watch cache: the old version is expired.
    for i in 0..8 {
        k.run(&[
            "run",
            &format!("r{i}"),
            "--image=busybox",
            "--restart=Never",
        ])
        .ok();
    }
    let evs = watch(&format!("resourceVersion={rv0}"));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_status(&evs[0]["object"], 410, "Expired");

    // A continue token whose revision was compacted: 410.
    let (_, body) = curl(&[
        "-s",
        &format!("{}/api/v1/namespaces/default/pods?limit=2", api.url),
    ]);
    let page: Value = serde_json::from_str(&body).unwrap();
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    k.run(&["run", "after", "--image=busybox", "--restart=Never"])
        .ok();
    let head = cluster.compact_to_head().await;
    let (_, body) = curl(&[
        "-s",
        &format!(
            "{}/api/v1/namespaces/default/pods?limit=2&continue={token}",
            api.url
        ),
    ]);
    assert_status(&serde_json::from_str(&body).unwrap(), 410, "Expired");

    // An apiserver started over the compacted store serves watches (its caches start at the
    // compaction instead of asking for history that is gone).
    let api2 = Apiserver::start(
        &dir.path().join("api2"),
        &cluster.client_urls().join(","),
        &[],
    )
    .await;
    let (_, body) = curl(&[
        "-s",
        "--max-time",
        "10",
        &format!(
            "{}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=2",
            api2.url
        ),
    ]);
    let first: Value = serde_json::from_str(body.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(first["type"], "ADDED", "{body}");
    let (_, body) = curl(&[
        "-s",
        "--max-time",
        "10",
        &format!(
            "{}/api/v1/namespaces?watch=true&timeoutSeconds=1&resourceVersion={head}",
            api2.url
        ),
    ]);
    assert!(!body.contains("ERROR"), "{body}");
}

/// Finalizers, deletion timestamps, propagation policies and graceful pod deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_and_graceful_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api) = setup(dir.path(), &[]).await;
    let k = kubectl_132(&api, dir.path())
        .or_else(|| kubectl_120(&api, dir.path()))
        .expect("a kubectl");
    let get = |kind: &str, name: &str| -> Option<Value> {
        let out = k.run(&["get", kind, name, "-o", "json"]);
        (out.code == 0).then(|| serde_json::from_str(&out.stdout).unwrap())
    };

    // A finalizer holds the object after delete, marked; removing it lets it go.
    let d = deployment("held", 1, "busybox").replacen(
        "  labels: {app: held}\n",
        "  labels: {app: held}\n  finalizers: [example.com/hold]\n",
        1,
    );
    k.run_with(&["create", "-f", "-"], &d).ok();
    k.run(&["delete", "deploy", "held", "--wait=false"]).ok();
    let held = get("deploy", "held").expect("still there");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let add = k.run(&[
        "patch",
        "deploy",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/late"}]"#,
    ]);
    assert!(
        add.err()
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        add.stderr
    );
    k.run(&[
        "patch",
        "deploy",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    assert!(
        get("deploy", "held").is_none(),
        "gone once the last finalizer is removed"
    );

    // Foreground and orphan deletion are recorded as finalizers for the garbage collector.
    k.run_with(&["create", "-f", "-"], &deployment("fg", 1, "busybox"))
        .ok();
    k.run(&[
        "delete",
        "deploy",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ])
    .ok();
    let fg = get("deploy", "fg").expect("waits for its dependents");
    assert_eq!(
        fg["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    k.run_with(&["create", "-f", "-"], &deployment("orph", 1, "busybox"))
        .ok();
    k.run(&[
        "delete",
        "deploy",
        "orph",
        "--cascade=orphan",
        "--wait=false",
    ])
    .ok();
    assert_eq!(
        get("deploy", "orph").unwrap()["metadata"]["finalizers"],
        serde_json::json!(["orphan"])
    );

    // A pod bound to a node is deleted gracefully: marked with its grace period until the
    // kubelet (here: a client) deletes it with grace 0.
    k.run_with(
        &["create", "-f", "-"],
        &POD.replace(
            "spec:\n",
            "spec:\n  nodeName: node-a\n  terminationGracePeriodSeconds: 45\n",
        ),
    )
    .ok();
    k.run(&["delete", "pod", "solo", "--wait=false"]).ok();
    let pod = get("pod", "solo").expect("terminating");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 45);
    let out = k.run(&["get", "pod", "solo"]).ok().to_string();
    assert!(out.contains("Terminating"), "{out}");
    k.run(&["delete", "pod", "solo", "--grace-period=0", "--force"])
        .ok();
    assert!(get("pod", "solo").is_none());

    // Deleting a namespace deletes what is in it, then the namespace; a pod on a node keeps
    // it Terminating until the pod is gone. Emptying it is the controller-manager's
    // namespace controller's job, as on Kubernetes.
    let _cm = bosun_tests::component::Component::start(
        dir.path(),
        "controller-manager",
        "controller-manager",
        &api.url,
        &[],
        &[],
    );
    k.run_with(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n",
    )
    .ok();
    k.run_with(
        &["create", "-n", "doomed", "-f", "-"],
        &deployment("web", 1, "busybox"),
    )
    .ok();
    k.run_with(
        &["create", "-n", "doomed", "-f", "-"],
        &POD.replace("spec:\n", "spec:\n  nodeName: node-a\n"),
    )
    .ok();
    k.run(&["delete", "namespace", "doomed", "--wait=false"])
        .ok();
    wait_for(
        "the deployment goes with its namespace",
        Duration::from_secs(20),
        || async {
            let out = k.run(&["get", "deploy", "-n", "doomed", "-o", "name"]);
            out.code == 0 && out.stdout.trim().is_empty()
        },
    )
    .await;
    let out = k.run(&["get", "namespace", "doomed"]).ok().to_string();
    assert!(out.contains("Terminating"), "{out}");
    let out = k.run_with(
        &["create", "-n", "doomed", "-f", "-"],
        &deployment("late", 1, "busybox"),
    );
    assert!(
        out.err().contains("because it is being terminated"),
        "{}",
        out.stderr
    );
    k.run(&[
        "delete",
        "pod",
        "solo",
        "-n",
        "doomed",
        "--grace-period=0",
        "--force",
    ])
    .ok();
    wait_for(
        "the namespace is removed once empty",
        Duration::from_secs(20),
        || async { k.run(&["get", "namespace", "doomed"]).code != 0 },
    )
    .await;

    // The built-in namespaces cannot be deleted.
    let out = k.run(&["delete", "namespace", "default"]);
    assert!(
        out.err().contains("Forbidden") && out.stderr.contains("this namespace may not be deleted"),
        "{}",
        out.stderr
    );
}

/// pods/log goes to the kubelet of the pod's node; clear errors until there is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_route_to_the_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api) = setup(dir.path(), &[]).await;
    let k = kubectl_132(&api, dir.path())
        .or_else(|| kubectl_120(&api, dir.path()))
        .expect("a kubectl");
    k.run_with(&["create", "-f", "-"], POD).ok();
    let out = k.run(&["logs", "solo"]);
    assert!(
        out.err().contains("pod solo does not have a host assigned"),
        "{}",
        out.stderr
    );

    // A stand-in kubelet log endpoint (the kubelet comes in a later issue): it answers
    // /containerLogs/<ns>/<pod>/<container> as the kubelet does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let body = format!("log line from {path}\n");
            let _ = s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
        }
    });
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n  - {{type: InternalIP, address: 127.0.0.1}}\n  daemonEndpoints:\n    kubeletEndpoint: {{Port: {port}}}\n"
    );
    k.run_with(&["create", "-f", "-"], &node).ok();
    // The status is a subresource: set it there, as the kubelet will.
    let status: Value = serde_json::from_str(
        &serde_json::to_string(&serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
        .unwrap(),
    )
    .unwrap();
    let (code, _) = curl(&[
        "-s",
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/merge-patch+json",
        "--data",
        &status.to_string(),
        &format!("{}/api/v1/nodes/node-a/status", api.url),
    ]);
    assert_eq!(code, 0);
    let (code, _) = curl_post_json(
        &format!("{}/api/v1/namespaces/default/pods/solo/binding", api.url),
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"solo"},"target":{"kind":"Node","name":"node-a"}}"#,
    );
    assert_eq!(code, 0);
    let out = k.run(&["logs", "solo", "--tail=5"]).ok().to_string();
    assert!(
        out.starts_with("log line from /containerLogs/default/solo/c?")
            && out.contains("tailLines=5"),
        "{out}"
    );
    let out = k.run(&["logs", "solo", "-c", "nope"]);
    assert!(
        out.err()
            .contains("container nope is not valid for pod solo"),
        "{}",
        out.stderr
    );
    // Binding twice is a conflict.
    let (_, body) = curl_post_json(
        &format!("{}/api/v1/namespaces/default/pods/solo/binding", api.url),
        r#"{"target":{"kind":"Node","name":"node-b"}}"#,
    );
    assert!(
        body.contains("is already assigned to node \\\"node-a\\\""),
        "{body}"
    );
}

/// SIGTERM stops the apiserver promptly even with watches open (they end; clients re-watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_promptly_with_watches_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, mut api) = setup(dir.path(), &[]).await;
    let out = dir.path().join("watch.out");
    let mut watch = std::process::Command::new("curl")
        .args(["-sN", &format!("{}/api/v1/pods?watch=true", api.url)])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let client = bosun_api_client::ApiClient::connect(&api.url)
        .await
        .unwrap();
    let mut grpc_watch = client
        .watch::<bosun_api_client::k8s_openapi::api::core::v1::Pod>("", &Default::default())
        .await
        .unwrap();
    // The REST watch is open once its response has started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = api.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "apiserver did not stop in 5 s: {status:?}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), grpc_watch.next()).await;
    assert!(
        matches!(ended, Ok(Err(_)) | Ok(Ok(None))),
        "the gRPC watch ends: {ended:?}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}
