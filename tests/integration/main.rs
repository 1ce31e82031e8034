//! Bosun's integration tests against real processes on loopback, in one test binary.
//!
//! One module per area; a test's full name is `<module>::<test>`:
//!
//! - `conformance`: the etcd conformance suite through `etcd-client`, against `bosun store`
//!   and real etcd.
//! - `etcdctl`: unmodified etcdctl's output against Bosun's and etcd's.
//! - `durability`: acknowledged writes survive kill -9.
//! - `sdk`: the store SDK (`bosun-client`) against both servers.
//! - `cluster`: three-member clusters: failover, membership changes, snapshots, leases.
//! - `chain`: the whole chain: store, apiserver, controller-manager, scheduler and hollow
//!   nodes driven by kubectl 1.32 and 1.20; leaders killed mid-work; bad input.
//! - `chaos`: faults under load, checked for linearizability and watch correctness.
//! - `apiserver`: the apiserver driven by unmodified kubectl.
//! - `apiserver_input`: the apiserver against bad input and slow clients.
//! - `grpc_api`: the apiserver's gRPC API through `bosun-api-client`.
//! - `controllers`: `bosun controller-manager` (deployments, replicasets, leader election)
//!   driven by kubectl.
//! - `e2e`: the whole system over real containers: a Deployment of busybox httpd created,
//!   scaled, rolled (readiness-gated, store leader killed), logs, exec, restarts, probes,
//!   bad images, kubelet restarts, and nothing left on the host after a delete.
//! - `cri`: the kubelet over containerd (`--runtime cri`), each test on a private containerd.
//! - `kubelet`: hollow nodes (`bosun kubelet --runtime fake`): nodes, leases, pods.
//! - `nodelifecycle`: the node lifecycle controller: a kubelet that dies has its nodes
//!   tainted unreachable and its pods replaced on other nodes.
//! - `layers`: the crate graph: only the apiserver's side reaches the store.
//! - `namespaces`: the namespace lifecycle (`kubectl delete namespace` with the
//!   controller-manager's namespace controller) and garbage collection over every kind.
//! - `runtime`: the controller runtime (reflector, leader election, events) and field managers.
//! - `scheduler`: `bosun scheduler` binding pods to Node objects, two schedulers racing.
//! - `up`: `bosun up` (hollow nodes, and a private containerd): up, kubectl, SIGTERM stops
//!   every child and leaves no bridge, sandbox or cgroup; up again resumes.
//! - `streams`: `kubectl logs` and `kubectl exec` through the apiserver and the kubelet (CRI
//!   log files; exec into a container of a private containerd).
//!
//! `cargo test -p bosun-tests --test integration chaos::` runs one module,
//! `cargo test -p bosun-tests --test integration chaos::chaos_short -- --exact` one test. The
//! tests start `target/<profile>/bosun`: build it first (`cargo build -p bosun --bins`).

#![allow(clippy::unwrap_used)]

mod apiserver;
mod apiserver_input;
mod chain;
mod chaos;
mod cluster;
mod conformance;
mod controllers;
mod cri;
mod durability;
mod e2e;
mod etcdctl;
mod grpc_api;
mod kubelet;
mod layers;
mod namespaces;
mod nodelifecycle;
mod runtime;
mod scheduler;
mod sdk;
mod streams;
mod up;
