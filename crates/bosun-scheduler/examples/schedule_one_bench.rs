//! Micro benchmark of `Scheduler::schedule_one` over 5,000 nodes: prints pods/s.
//!
//! `cargo run --release -p bosun-scheduler --example schedule_one_bench [nodes] [pods]`
//!
//! Nodes carry a hostname and one of 10 zones; pods come from deployments of 50 replicas
//! (100m CPU, 128Mi each) and are spread by the system defaults over their ReplicaSet's
//! selector, as kube-scheduler spreads a Deployment's pods. Each placed pod is assumed on its
//! node, so later decisions see it, as in the scheduling loop.

use std::collections::BTreeMap;
use std::time::Instant;

use bosun_scheduler::{
    PreparedPod, Scheduler, SchedulerConfig, Snapshot, SplitMix64, default_spread_selector,
};
use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn node(i: usize) -> Node {
    let name = format!("node-{i:05}");
    Node {
        metadata: ObjectMeta {
            labels: Some(
                [
                    ("kubernetes.io/hostname".to_owned(), name.clone()),
                    (
                        "topology.kubernetes.io/zone".to_owned(),
                        format!("zone-{}", i % 10),
                    ),
                ]
                .into(),
            ),
            name: Some(name),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(quantities(&[
                ("cpu", "16"),
                ("memory", "64Gi"),
                ("pods", "110"),
            ])),
            ..Default::default()
        }),
    }
}

fn pod(i: usize, replicas_per_app: usize) -> Pod {
    let app = format!("app-{}", i / replicas_per_app);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{app}-{i}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{i}")),
            labels: Some(
                [
                    ("app".to_owned(), app),
                    ("pod-template-hash".to_owned(), "5d8f7c9b6".to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn run(nodes: usize, pods: usize, spread: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mut snap = Snapshot::new();
    for i in 0..nodes {
        snap.upsert_node(&node(i))?;
    }
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let mut rng = SplitMix64::new(42);
    let replicas = 50;
    let started = Instant::now();
    let mut placed = 0usize;
    for i in 0..pods {
        let p = pod(i, replicas);
        let default = if spread {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let rs = LabelSelector {
                match_labels: Some(labels),
                match_expressions: None,
            };
            default_spread_selector(&[], Some(&rs))
        } else {
            None
        };
        let prepared = PreparedPod::new(&p, default.as_ref())?;
        if let Ok(r) = sched.schedule_one(&snap, &prepared, &mut rng) {
            snap.assume(&prepared, &r.node)?;
            placed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{nodes} nodes, {pods} pods ({}): {placed} placed in {secs:.2} s: {:.0} pods/s, {:.1} us/pod",
        if spread {
            "system-default spreading by owner"
        } else {
            "no spreading"
        },
        pods as f64 / secs,
        secs * 1e6 / pods as f64,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let pods = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    run(nodes, pods, false)?;
    run(nodes, pods, true)?;
    Ok(())
}
