#!/usr/bin/env bash
# Installs the build dependencies, builds bosun, and runs a three-member store cluster on
# loopback: client URLs http://127.0.0.1:2379, :22379, :32379 (peers on :2380, :22380,
# :32380), data in ./bosun-data/m1..m3. Extra arguments go to every `bosun store`. Then an
# apiserver on http://127.0.0.1:8080 over the three members, with a kubeconfig for kubectl
# in ./bosun-data/kubeconfig, the controller-manager, the scheduler and three hollow nodes
# (`bosun kubelet --runtime fake`). Ctrl-C (or SIGTERM) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cargo build --release --locked -p bosun
bin="${CARGO_TARGET_DIR:-target}/release/bosun"

clients=(2379 22379 32379)
peers=(2380 22380 32380)
cluster=""
for i in 0 1 2; do
    cluster+="${cluster:+,}m$((i + 1))=http://127.0.0.1:${peers[$i]}"
done
pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT
mkdir -p bosun-data
for i in 0 1 2; do
    name="m$((i + 1))"
    "$bin" store --name "$name" --data-dir "bosun-data/$name" \
        --listen-client-urls "http://127.0.0.1:${clients[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${clients[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${peers[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${peers[$i]}" \
        --initial-cluster "$cluster" "$@" 2> >(sed -u "s/^/$name | /" >&2) &
    pids+=("$!")
done
endpoints="http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379"
"$bin" apiserver --etcd-servers "$endpoints" --listen 127.0.0.1:8080 \
    2> >(sed -u "s/^/api | /" >&2) &
pids+=("$!")
api=http://127.0.0.1:8080
"$bin" controller-manager --apiserver "$api" 2> >(sed -u "s/^/cm | /" >&2) &
pids+=("$!")
"$bin" scheduler --apiserver "$api" 2> >(sed -u "s/^/sched | /" >&2) &
pids+=("$!")
"$bin" kubelet --apiserver "$api" --node-name hollow --runtime fake --node-count 3 \
    2> >(sed -u "s/^/kubelet | /" >&2) &
pids+=("$!")
printf '%s\n' "apiVersion: v1" "kind: Config" "clusters:" "- cluster:" \
    "    server: http://127.0.0.1:8080" "  name: bosun" "contexts:" "- context:" \
    "    cluster: bosun" "    user: admin" "  name: bosun" "current-context: bosun" \
    "users:" "- name: admin" "  user: {}" > bosun-data/kubeconfig
echo "bosun: three store members, an apiserver, the controller-manager, the scheduler and three hollow nodes; try:" >&2
echo "  etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list" >&2
echo "  export KUBECONFIG=$PWD/bosun-data/kubeconfig" >&2
echo "  kubectl get nodes; kubectl create deployment web --image=busybox --replicas=3" >&2
echo "  kubectl get pods -o wide; kubectl rollout status deploy web" >&2
wait -n "${pids[@]}"
