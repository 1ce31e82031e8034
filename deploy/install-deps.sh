#!/usr/bin/env bash
# Installs what Bosun needs on a fresh Debian machine of this kind (run as root).
#   deploy/install-deps.sh          build dependencies (clang/libclang for rocksdb, protoc)
#   deploy/install-deps.sh --test   plus what the tests use (etcd and etcdctl as references,
#                                   kubectl 1.20 from Debian's kubernetes-client, extracted to
#                                   /opt/bosun/kubectl-1.20 because it conflicts with an
#                                   installed kubectl)
set -euo pipefail

pkgs=(clang libclang-dev protobuf-compiler build-essential)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(etcd-server etcd-client)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the etcd service on install; the tests start their own etcd.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

# kubectl 1.20 for the apiserver tests, next to whatever kubectl is installed.
if [[ "${1:-}" == "--test" && ! -x /opt/bosun/kubectl-1.20/usr/bin/kubectl ]]; then
  echo "extracting kubectl 1.20 (kubernetes-client) to /opt/bosun/kubectl-1.20"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq kubernetes-client 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq kubernetes-client; }; })
  mkdir -p /opt/bosun/kubectl-1.20
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb /opt/bosun/kubectl-1.20
  rm -rf "$tmp"
fi
