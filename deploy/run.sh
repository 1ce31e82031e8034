#!/usr/bin/env bash
# The run command: installs what Bosun needs (deploy/install-deps.sh: the build dependencies,
# containerd, runc, the CNI plugins, iptables, busybox-static, umoci), builds bosun in release,
# and runs `bosun up`: a private containerd with the busybox and pause images imported, three
# store members (clients on 127.0.0.1:2379, :22379, :32379), an apiserver on 127.0.0.1:8080, the
# controller-manager, the scheduler and a kubelet on containerd; data, logs and the kubeconfig
# in /var/lib/bosun. Ctrl-C (or SIGTERM) stops it all and cleans up. Arguments go to `bosun up`
# (`--runtime fake` for hollow nodes without containerd, `--data-dir DIR`; see `bosun up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cargo build --release --locked -p bosun
exec "${CARGO_TARGET_DIR:-target}/release/bosun" up "$@"
