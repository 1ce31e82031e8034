//! The apiserver against bad input and slow clients, over a real store:
//!
//! - malformed requests of every verb get Kubernetes' answer and change nothing in the store;
//! - a delete-collection that is refused deletes nothing;
//! - JSON patches that copy, and objects too large for the store, are refused with bounded
//!   memory;
//! - slow, idle and surplus connections are dropped while well-behaved clients are served,
//!   and long-lived watches (HTTP/1.1 and gRPC) outlive the idle timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bosun_client::{Client, ConnectOptions, GetOptions};
use bosun_tests::kube::{Apiserver, http};
use bosun_tests::{Cluster, Kind, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup(dir: &std::path::Path, extra: &[&str]) -> (Cluster, Apiserver, Client) {
    let cluster = Cluster::start(Kind::Bosun, dir, 1, &[]).await;
    let endpoints = cluster.client_urls().join(",");
    let api = Apiserver::start(&dir.join("api"), &endpoints, extra).await;
    let kv = Client::connect(cluster.client_urls(), ConnectOptions::default())
        .await
        .unwrap();
    (cluster, api, kv)
}

/// Every object in the store: key -> (mod_revision, value).
async fn snapshot(kv: &Client) -> BTreeMap<Vec<u8>, (i64, Vec<u8>)> {
    let resp = kv
        .get("/registry/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    resp.kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.mod_revision, kv.value)))
        .collect()
}

fn create(api: &Apiserver, path: &str, obj: &Value) -> Value {
    let (code, body) = http(
        "POST",
        &format!("{}{path}", api.url),
        "application/json",
        obj.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "create {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// A request of a table row.
struct Req {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn get(path: &str) -> Req {
    send("GET", path, "", "")
}

fn send(
    method: &'static str,
    path: &str,
    content_type: &'static str,
    body: impl Into<Vec<u8>>,
) -> Req {
    Req {
        method,
        path: path.to_string(),
        content_type,
        body: body.into(),
    }
}

/// Kubernetes' answer: the HTTP code, the Status reason (for a 200, the type of the first
/// watch event, or "" for a list) and, where Kubernetes fixes it, the message.
struct Want {
    code: u16,
    reason: &'static str,
    message: Option<String>,
}

fn want(code: u16, reason: &'static str) -> Want {
    Want {
        code,
        reason,
        message: None,
    }
}

fn want_msg(code: u16, reason: &'static str, message: &str) -> Want {
    Want {
        message: Some(message.to_string()),
        ..want(code, reason)
    }
}

/// Every verb with malformed input, each row: request -> HTTP code + Status reason (+ the
/// message where Kubernetes fixes it); the store must not change, whatever the verb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_of_every_verb_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, kv) = setup(dir.path(), &[]).await;
    create(
        &api,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "t"}}),
    );
    // Sorted before "default": the namespace a delete-collection of namespaces reached first.
    create(
        &api,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "aaa"}}),
    );
    let p = create(&api, "/api/v1/namespaces/t/pods", &pod("p"));
    create(&api, "/api/v1/namespaces/t/pods", &pod("p2"));
    create(
        &api,
        "/apis/apps/v1/namespaces/t/deployments",
        &json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
    );
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();

    let pods = "/api/v1/namespaces/t/pods";
    let pp = "/api/v1/namespaces/t/pods/p";
    let json = "application/json";
    let jp = "application/json-patch+json";
    let mp = "application/merge-patch+json";
    let sp = "application/strategic-merge-patch+json";
    let mut pod_q = pod("q");
    pod_q["metadata"]["namespace"] = json!("t");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = p.clone();
        f(&mut v);
        v.to_string()
    };
    let name_mismatch = "the name of the object (q) does not match the name on the URL (p)";
    let ns_mismatch =
        "the namespace of the provided object does not match the namespace sent on the request";
    let not_allowed = "the server does not allow this method on the requested resource";
    let patch_failed = "the server rejected our request due to an error in our request";
    let many_ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Pod"}))
        .collect();
    let deploy = "/apis/apps/v1/namespaces/t/deployments/d";
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
    #[rustfmt::skip]
    let rows: Vec<(&str, Req, Want)> = vec![
        ("get", get(&format!("{pods}/nope")), want_msg(404, "NotFound", "pods \"nope\" not found")),
        ("get", get("/api/v1/namespaces/t/widgets"), want_msg(404, "NotFound", "the server could not find the requested resource")),
        ("list", get(&format!("{pods}?limit=abc")), want_msg(400, "BadRequest", "strconv.ParseInt: parsing \"abc\": invalid syntax")),
        ("list", get(&format!("{pods}?limit=1x")), want_msg(400, "BadRequest", "strconv.ParseInt: parsing \"1x\": invalid syntax")),
        // Kubernetes lists everything for a limit of 0 or less.
        ("list", get(&format!("{pods}?limit=-1")), want(200, "")),
        ("list", get(&format!("{pods}?resourceVersion=5&resourceVersionMatch=Zzz")), want_msg(422, "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Zzz\": supported values: \"Exact\", \"NotOlderThan\", \"\"")),
        ("list", get(&format!("{pods}?resourceVersionMatch=Exact")), want_msg(422, "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")),
        ("list", get(&format!("{pods}?resourceVersion=abc")), want_msg(400, "BadRequest",
            "invalid resource version: resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax")),
        ("list", get(&format!("{pods}?labelSelector=a%20in")), want(400, "BadRequest")),
        ("list", get(&format!("{pods}?fieldSelector=spec.nothing%3Dx")), want_msg(400, "BadRequest", "field label not supported: spec.nothing")),
        ("watch", get(&format!("{pods}?watch=true&resourceVersion=-5")), want_msg(400, "BadRequest",
            "invalid resource version: resourceVersion: Invalid value: \"-5\": strconv.ParseUint: parsing \"-5\": invalid syntax")),
        ("watch", get(&format!("{pods}?watch=true&resourceVersion=1&resourceVersionMatch=Exact")), want_msg(422, "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch")),
        ("watch", get(&format!("{pods}?watch=true&timeoutSeconds=soon")), want_msg(400, "BadRequest", "strconv.ParseInt: parsing \"soon\": invalid syntax")),
        ("watch", get("/api/v1/watch/namespaces/t/pods/p?resourceVersion=x"), want(400, "BadRequest")),
        // Kubernetes reads any value but false and 0 as true: this is a watch.
        ("watch", get(&format!("{pods}?watch=maybe&timeoutSeconds=1")), want(200, "ADDED")),
        ("create", send("POST", pods, json, r#"{"kind":5,"metadata":{"name":"k"}}"#), want(400, "BadRequest")),
        ("create", send("POST", pods, json, r#"{"kind":"Service","metadata":{"name":"k"}}"#), want(400, "BadRequest")),
        ("create", send("POST", pods, json, r#"{"apiVersion":"apps/v1","metadata":{"name":"k"}}"#), want_msg(400, "BadRequest",
            "the API version in the data (apps/v1) does not match the expected API version (v1)")),
        ("create", send("POST", pods, json, "{not json"), want(400, "BadRequest")),
        ("create", send("POST", pods, json, pod("k").to_string().replace("\"k\"", "\"k\",\"namespace\":\"other\"")), want_msg(400, "BadRequest", ns_mismatch)),
        // YAML whose aliases expand (a "billion laughs"): refused before it is parsed.
        ("create", send("POST", pods, "application/yaml", bomb), want(415, "UnsupportedMediaType")),
        ("update", send("PUT", pp, json, with(&|v| v["metadata"]["name"] = json!("q"))), want_msg(400, "BadRequest", name_mismatch)),
        ("update", send("PUT", pp, json, with(&|v| v["kind"] = json!("Deployment"))), want_msg(400, "BadRequest",
            "the kind in the data (Deployment) does not match the expected kind (Pod)")),
        ("update", send("PUT", pp, json, with(&|v| v["kind"] = json!(7))), want(400, "BadRequest")),
        ("update", send("PUT", pp, json, with(&|v| v["metadata"]["namespace"] = json!("other"))), want_msg(400, "BadRequest", ns_mismatch)),
        ("update", send("PUT", pp, json, with(&|v| v["metadata"]["name"] = json!(5))), want(400, "BadRequest")),
        ("update", send("PUT", "/api/v1/namespaces/t/pods/nope", json, pod_q.to_string()), want_msg(400, "BadRequest",
            "the name of the object (q) does not match the name on the URL (nope)")),
        ("patch json", send("PATCH", pp, jp, r#"[{"op":"replace","path":"/metadata/name","value":"q"}]"#), want_msg(400, "BadRequest", name_mismatch)),
        ("patch json", send("PATCH", pp, jp, r#"[{"op":"remove","path":"/metadata/name"}]"#), want_msg(400, "BadRequest", "name must be provided")),
        ("patch json", send("PATCH", pp, jp, r#"[{"op":"replace","path":"/kind","value":"Deployment"}]"#), want_msg(400, "BadRequest",
            "the kind in the data (Deployment) does not match the expected kind (Pod)")),
        ("patch json", send("PATCH", pp, jp, r#"[{"op":"replace","path":"/metadata/namespace","value":"other"}]"#), want_msg(400, "BadRequest", ns_mismatch)),
        ("patch json", send("PATCH", pp, jp, r#"[{"op":"remove","path":"/nothing"}]"#), want_msg(422, "Invalid", patch_failed)),
        ("patch json", send("PATCH", pp, jp, r#"{"op":"remove"}"#), want(400, "BadRequest")),
        ("patch json", send("PATCH", pp, jp, Value::Array(many_ops).to_string()), want_msg(413, "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001")),
        ("patch merge", send("PATCH", pp, mp, r#"{"metadata":{"name":"q"}}"#), want_msg(400, "BadRequest", name_mismatch)),
        ("patch merge", send("PATCH", pp, mp, r#"{"kind":"Service"}"#), want_msg(400, "BadRequest",
            "the kind in the data (Service) does not match the expected kind (Pod)")),
        ("patch merge", send("PATCH", pp, mp, "[1,2]"), want(400, "BadRequest")),
        ("patch merge", send("PATCH", pp, mp, "{"), want(400, "BadRequest")),
        ("patch strategic", send("PATCH", deploy, sp, r#"{"metadata":{"name":"q"}}"#), want_msg(400, "BadRequest",
            "the name of the object (q) does not match the name on the URL (d)")),
        ("patch strategic", send("PATCH", deploy, sp, r#"{"metadata":{"namespace":"other"}}"#), want_msg(400, "BadRequest", ns_mismatch)),
        ("patch strategic", send("PATCH", deploy, sp, r#"{"apiVersion":"v1"}"#), want_msg(400, "BadRequest",
            "the API version in the data (v1) does not match the expected API version (apps/v1)")),
        ("delete", send("DELETE", pp, json, r#"{"propagationPolicy":"Sideways"}"#), want(400, "BadRequest")),
        ("delete", send("DELETE", pp, json, r#"{"propagationPolicy":5}"#), want(400, "BadRequest")),
        ("delete", send("DELETE", pp, json, r#"{"gracePeriodSeconds":"soon"}"#), want(400, "BadRequest")),
        ("delete", send("DELETE", &format!("{pp}?gracePeriodSeconds=x"), "", ""), want_msg(400, "BadRequest", "strconv.ParseInt: parsing \"x\": invalid syntax")),
        ("delete", send("DELETE", pp, json, r#"{"preconditions":{"uid":"nope"}}"#), want_msg(409, "Conflict",
            &format!("Operation cannot be fulfilled on pods \"p\": Precondition failed: UID in precondition: nope, UID in object meta: {uid}"))),
        ("delete", send("DELETE", "/api/v1/namespaces/default", "", ""), want(403, "Forbidden")),
        ("deletecollection", send("DELETE", "/api/v1/namespaces", "", ""), want_msg(405, "MethodNotAllowed", not_allowed)),
        // The precondition holds for p, not for p2: nothing may be deleted.
        ("deletecollection", send("DELETE", pods, json, format!(r#"{{"preconditions":{{"uid":"{uid}"}}}}"#)), want(409, "Conflict")),
        ("deletecollection", send("DELETE", pods, json, r#"{"propagationPolicy":"Sideways"}"#), want(400, "BadRequest")),
        ("deletecollection", send("DELETE", &format!("{pods}?gracePeriodSeconds=x"), "", ""), want(400, "BadRequest")),
        ("deletecollection", send("DELETE", &format!("{pods}?labelSelector=a%20in"), "", ""), want(400, "BadRequest")),
    ];
    let mut before = snapshot(&kv).await;
    assert!(before.len() >= 9, "{:?}", before.keys());
    let mut failures = Vec::new();
    for (verb, r, w) in &rows {
        let url = format!("{}{}", api.url, r.path);
        let (code, body) = http(r.method, &url, r.content_type, &r.body);
        let what = format!("{verb}: {} {}", r.method, r.path);
        if code != w.code {
            failures.push(format!("{what}: code {code}, want {}: {body:.300}", w.code));
        } else if code == 200 {
            let first: Value = body
                .lines()
                .next()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(Value::Null);
            let got = if w.reason.is_empty() {
                first["kind"].as_str().map(|_| "")
            } else {
                first["type"].as_str()
            };
            if got != Some(w.reason) {
                failures.push(format!("{what}: got {body:.300}, want {:?}", w.reason));
            }
        } else {
            let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status["kind"] != "Status"
                || status["code"] != w.code
                || status["reason"].as_str().unwrap_or("") != w.reason
            {
                failures.push(format!("{what}: {body:.300}, want reason {}", w.reason));
            }
            if let Some(m) = &w.message
                && status["message"].as_str() != Some(m.as_str())
            {
                failures.push(format!("{what}: message {}, want {m:?}", status["message"]));
            }
        }
        let after = snapshot(&kv).await;
        if after != before {
            failures.push(format!("{what}: the store changed"));
            before = after;
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Discovery says what is served: no deletecollection on namespaces.
    let (_, body) = http("GET", &format!("{}/api/v1", api.url), "", b"");
    let list: Value = serde_json::from_str(&body).unwrap();
    let verbs = |name: &str| -> Vec<String> {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| serde_json::from_value(r["verbs"].clone()).unwrap())
            .unwrap()
    };
    assert!(!verbs("namespaces").contains(&"deletecollection".to_string()));
    assert!(verbs("pods").contains(&"deletecollection".to_string()));
    // A delete-collection that passes its checks still works.
    let (code, body) = http(
        "DELETE",
        &format!("{}{pods}?labelSelector=app%3Dx", api.url),
        "",
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let deleted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2, "{body}");
}

/// A JSON patch whose copies double the object (17 copies of an object into itself would
/// build 256 MiB) is refused before the copies are made: Kubernetes' 422, and the
/// apiserver's peak memory barely moves. Objects between the store's limit and the request
/// cap get 413 naming the limit, not a 500 with the store's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanding_patches_and_oversized_objects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, kv) = setup(dir.path(), &[]).await;
    let mut p = pod("p");
    p["metadata"]["annotations"] = json!({"pad": "x".repeat(2048)});
    create(&api, "/api/v1/namespaces/default/pods", &p);
    let before = snapshot(&kv).await;
    let peak_before = api.peak_rss_kib();

    // Each copy adds the whole of metadata under a new key of it: the object doubles.
    let copies: Vec<Value> = (0..17)
        .map(|i| json!({"op": "copy", "from": "/metadata", "path": format!("/metadata/annotations/c{i}")}))
        .collect();
    let started = Instant::now();
    let (code, body) = http(
        "PATCH",
        &format!("{}/api/v1/namespaces/default/pods/p", api.url),
        "application/json-patch+json",
        Value::Array(copies).to_string().as_bytes(),
    );
    let took = started.elapsed();
    let grown_kib = api.peak_rss_kib().saturating_sub(peak_before);
    println!("copy patch answered {code} in {took:?}; peak RSS grew by {grown_kib} KiB");
    assert!(
        grown_kib < 64 * 1024,
        "peak RSS grew by {grown_kib} KiB answering a copy patch"
    );
    let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "{body:.500}"
    );
    assert_eq!(
        status["message"],
        "the server rejected our request due to an error in our request"
    );
    let cause = status["details"]["causes"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.starts_with("Unable to complete the copy, the accumulated size increase of copy is ")
            && cause.ends_with(", exceeding the limit 3145728"),
        "{body:.500}"
    );
    assert_eq!(snapshot(&kv).await, before);

    // An Event of 2.2 MB: above what the store takes, below the request cap.
    let event = json!({"metadata": {"name": "big"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Big", "message": "m".repeat(2_200_000), "type": "Normal"});
    let too_large = |body: &str, what: &str| {
        let status: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert_eq!(
            (status["code"].as_i64(), status["reason"].as_str()),
            (Some(413), Some("RequestEntityTooLarge")),
            "{what}: {body:.400}"
        );
        let m = status["message"].as_str().unwrap_or_default();
        assert!(
            m.starts_with("Request entity too large: the object is ")
                && m.ends_with("bytes; the store takes objects of at most 1568768 bytes"),
            "{what}: {m:.400}"
        );
    };
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/namespaces/default/events", api.url),
        "application/json",
        event.to_string().as_bytes(),
    );
    assert_eq!(code, 413, "{body:.400}");
    too_large(&body, "2.2 MB event");
    // A merge patch that grows an event past the limit (the patch itself is within the cap).
    let mut small = event.clone();
    small["metadata"]["name"] = json!("small");
    small["message"] = json!("m");
    create(&api, "/api/v1/namespaces/default/events", &small);
    let before = snapshot(&kv).await;
    let grow = json!({"message": "y".repeat(1_700_000)});
    let (code, body) = http(
        "PATCH",
        &format!("{}/api/v1/namespaces/default/events/small", api.url),
        "application/merge-patch+json",
        grow.to_string().as_bytes(),
    );
    assert_eq!(code, 413, "{body:.400}");
    too_large(&body, "merge patch to 1.7 MB");
    assert_eq!(snapshot(&kv).await, before);
    // Below the limit objects are stored as before.
    let mut event = event;
    event["message"] = json!("m".repeat(1_000_000));
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/namespaces/default/events", api.url),
        "application/json",
        event.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{body:.400}");
    // A body over the request cap: Kubernetes' message.
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/namespaces/default/pods", api.url),
        "application/json",
        format!("{{\"x\":\"{}\"}}", "z".repeat(4 << 20)).as_bytes(),
    );
    let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(
        (code, status["message"].as_str()),
        (413, Some("Request entity too large: limit is 3145728")),
        "{body:.400}"
    );
}

/// Sends a minimal HTTP/1.1 request on `s` and reads the status line of the answer.
async fn request_on(s: &mut TcpStream, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Read until the headers and the short body ("ok") are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .is_some_and(|n| body.len() >= n)
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_string)
}

/// Waits until the server closes `s`: `Some(time since since)`, or `None` if it is still
/// open `within` after `since`.
async fn closed_within(s: &mut TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    while since.elapsed() < within {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    None
}

/// A client sending its headers a byte at a time is dropped after the header-read timeout,
/// as are connections that send nothing (HTTP/1.1 or HTTP/2) and idle keep-alive ones; all
/// the while well-behaved clients are answered. Watches, over HTTP/1.1 and over gRPC, outlive
/// both timeouts and keep delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_dropped_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, _kv) = setup(
        dir.path(),
        &[
            "--header-read-timeout",
            "2",
            "--idle-timeout",
            "3",
            "--http2-max-streams-per-connection",
            "7",
        ],
    )
    .await;
    let addr = api.url.trim_start_matches("http://").to_string();

    // Long-lived watches, started first: REST over HTTP/1.1 and gRPC over HTTP/2.
    let watch_out = dir.path().join("watch.out");
    let mut rest_watch = std::process::Command::new("curl")
        .args([
            "-sN",
            &format!(
                "{}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=60",
                api.url
            ),
        ])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .spawn()
        .unwrap();
    let mut grpc = bosun_proto::apipb::api_client::ApiClient::connect(api.url.clone())
        .await
        .unwrap();
    let mut grpc_watch = grpc
        .watch(bosun_proto::apipb::WatchRequest {
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // A well-behaved client, asking every 100 ms on a new connection.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = {
        let addr = addr.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = match TcpStream::connect(&addr).await {
                    Ok(mut s) => request_on(&mut s, "/livez").await,
                    Err(e) => Some(e.to_string()),
                };
                match answer.as_deref() {
                    Some("HTTP/1.1 200 OK") => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };

    let started = Instant::now();
    // Slow loris: a request line, then a header byte every 300 ms, never finishing.
    let loris = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let start = Instant::now();
            for b in b"X-Slow: ".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    return Some(start.elapsed());
                }
                let mut buf = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
                    _ => {}
                }
                if start.elapsed() > Duration::from_secs(20) {
                    return None;
                }
            }
            None
        })
    };
    // Silent connections: HTTP/1.1 (nothing at all) and HTTP/2 (the preface, then nothing).
    let (mut silent, silent_at) = (TcpStream::connect(&addr).await.unwrap(), Instant::now());
    let (mut h2, h2_at) = (TcpStream::connect(&addr).await.unwrap(), Instant::now());
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // A keep-alive connection that asked once and then idles.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        request_on(&mut idle, "/livez").await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    let idle_at = Instant::now();
    // An HTTP/2 connection that made one request and then idles: closed with a GOAWAY after
    // the idle timeout. The server allows the streams --http2-max-streams-per-connection says.
    let (mut h2_client, h2_conn) = h2::client::handshake(TcpStream::connect(&addr).await.unwrap())
        .await
        .unwrap();
    let h2_ended = tokio::spawn(async move {
        let _ = h2_conn.await;
        Instant::now()
    });
    let (answer, _) = h2_client
        .send_request(
            http::Request::get(format!("http://{addr}/livez"))
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    while let Some(chunk) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.unwrap().len());
    }
    let h2_idle_at = Instant::now();
    assert_eq!(h2_client.current_max_send_streams(), 7);

    let within = Duration::from_secs(15);
    let silent_closed = closed_within(&mut silent, silent_at, within).await;
    let h2_closed = closed_within(&mut h2, h2_at, within).await;
    let idle_closed = closed_within(&mut idle, idle_at, within).await;
    let loris_closed = loris.await.unwrap();
    let h2_idle_closed = tokio::time::timeout(within, h2_ended)
        .await
        .ok()
        .map(|ended| ended.unwrap() - h2_idle_at);
    drop(h2_client);
    println!(
        "closed after: slow loris {loris_closed:?}, silent {silent_closed:?}, silent HTTP/2 {h2_closed:?}, idle keep-alive {idle_closed:?}, idle HTTP/2 {h2_idle_closed:?} (test time {:?})",
        started.elapsed()
    );
    for (what, closed) in [
        ("slow loris", loris_closed),
        ("silent HTTP/1.1", silent_closed),
        ("silent HTTP/2", h2_closed),
        ("idle keep-alive", idle_closed),
        ("idle HTTP/2", h2_idle_closed),
    ] {
        let t = closed.unwrap_or_else(|| panic!("{what} connection still open after 15 s"));
        assert!(
            t >= Duration::from_millis(1500),
            "{what} closed too early: {t:?}"
        );
    }

    // The watches outlived the timeouts: a change made now reaches both.
    tokio::time::sleep(Duration::from_secs(1)).await;
    create(&api, "/api/v1/namespaces/default/pods", &pod("late"));
    wait_for(
        "the REST watch to see pod late",
        Duration::from_secs(10),
        || {
            let out = std::fs::read_to_string(&watch_out).unwrap_or_default();
            async move { out.contains("\"name\":\"late\"") }
        },
    )
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = grpc_watch.message().await.unwrap() {
            let obj: Value = serde_json::from_slice(&ev.object).unwrap();
            if obj["metadata"]["name"] == "late" {
                return ev.r#type;
            }
        }
        String::new()
    })
    .await
    .expect("the gRPC watch sees pod late");
    assert_eq!(seen, "ADDED");
    assert!(
        rest_watch.try_wait().unwrap().is_none(),
        "the REST watch ended early"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = good.await.unwrap();
    assert!(
        failed.is_empty() && ok > 20,
        "well-behaved client: {ok} answered, failures: {failed:?}"
    );
    let _ = rest_watch.kill();
    let _ = rest_watch.wait();
}

/// With --max-connections 8, a ninth connection is closed at once, unanswered, while the
/// eight keep being served; once one closes, a new one is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_bound_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, _kv) = setup(dir.path(), &["--max-connections", "8"]).await;
    let addr = api.url.trim_start_matches("http://").to_string();
    // Readiness probes may still be closing their connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut open = Vec::new();
    for i in 0..8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(
            request_on(&mut s, "/livez").await.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "connection {i}"
        );
        open.push(s);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let answer = request_on(&mut extra, "/livez").await;
    assert_eq!(answer, None, "the ninth connection was answered");
    assert!(
        closed_within(&mut extra, Instant::now(), Duration::from_secs(5))
            .await
            .is_some()
    );
    for (i, s) in open.iter_mut().enumerate() {
        assert_eq!(
            request_on(s, "/livez").await.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "connection {i} after the refusal"
        );
    }
    drop(open.pop());
    let mut again = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        if request_on(&mut s, "/metrics").await.as_deref() == Some("HTTP/1.1 200 OK") {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "no connection accepted after one closed");
    drop(again);
    drop(open);
    let mut refused = 0u64;
    let url = format!("{}/metrics", api.url);
    wait_for("/metrics to answer", Duration::from_secs(10), || {
        let (code, m) = http("GET", &url, "", b"");
        refused = m
            .lines()
            .find_map(|l| l.strip_prefix("bosun_apiserver_connections_refused_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        async move { code == 200 }
    })
    .await;
    assert!(refused >= 1, "refused connections counted: {refused}");
}
