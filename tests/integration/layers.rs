//! The crate graph keeps the layers that Cargo is there to enforce: only the apiserver (and
//! the binary, tests and benchmark around it) reaches the store or its client, and the
//! components' client of the apiserver reaches no store crate at all. Read from
//! `cargo metadata`, so a dependency line that breaks a rule fails here, not in review.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The workspace's crates and the workspace crates each depends on (normal dependencies: what
/// is linked into it; dev- and build-dependencies are not).
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Every workspace crate `krate` links, directly or not.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_string()];
    while let Some(k) = todo.pop() {
        for d in graph.get(&k).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn only_the_apiserver_side_reaches_the_store() {
    let graph = workspace_graph();
    let store_side = ["bosun-store", "bosun-client"];
    // The store and its SDK, the apiserver over them, and what bundles or tests them.
    let allowed = [
        "bosun-store",
        "bosun-client",
        "bosun-apiserver",
        "bosun",
        "bosun-tests",
        "bosun-bench",
    ];
    let offenders: Vec<String> = graph
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .filter_map(|k| {
            let r = reaches(&graph, k);
            let hit: Vec<&str> = store_side.into_iter().filter(|s| r.contains(*s)).collect();
            (!hit.is_empty()).then(|| format!("{k} -> {hit:?}"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "crates other than the apiserver reach the store: {offenders:?}"
    );
}

#[test]
fn the_components_client_reaches_no_store_crate() {
    let graph = workspace_graph();
    assert!(
        graph.contains_key("bosun-api-client"),
        "no bosun-api-client crate"
    );
    let r = reaches(&graph, "bosun-api-client");
    for forbidden in [
        "bosun-store",
        "bosun-client",
        "bosun-proto",
        "bosun-apiserver",
    ] {
        assert!(
            !r.contains(forbidden),
            "bosun-api-client reaches {forbidden} (it reaches {r:?})"
        );
    }
}
