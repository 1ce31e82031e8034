#!/usr/bin/env bash
# Installs what Bosun needs on a fresh Debian machine of this kind (run as root), then checks
# that every file and tool the build (and, with --test, the tests) use is really there, and
# names what is missing if not.
#   deploy/install-deps.sh          build dependencies: clang and libclang (rocksdb's bindgen),
#                                   protoc and the well-known protos (google/protobuf/*.proto,
#                                   which the etcd-client crate's build script compiles); and
#                                   what `bosun up` runs pods with: containerd, runc, the CNI
#                                   plugins (in /usr/lib/cni), iptables, iproute2, and
#                                   busybox-static and umoci (the local busybox and pause images)
#   deploy/install-deps.sh --test   plus what the tests use: etcd and etcdctl as references,
#                                   kubectl 1.20 from Debian's kubernetes-client, extracted to
#                                   /opt/bosun/kubectl-1.20 because it conflicts with an
#                                   installed kubectl, curl, and skopeo and docker-registry
#                                   (a local registry, to try containerd's real pull path)
set -euo pipefail

test_deps=false
[[ "${1:-}" == "--test" ]] && test_deps=true

pkgs=(clang libclang-dev protobuf-compiler libprotobuf-dev build-essential pkg-config
  containerd runc containernetworking-plugins iptables iproute2 busybox-static umoci)
if $test_deps; then
  pkgs+=(etcd-server etcd-client curl procps skopeo docker-registry)
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
  # Debian starts these services on install where systemd runs: the tests start their own
  # etcd and registry, and `bosun up` its own containerd.
  if command -v systemctl >/dev/null; then
    [[ " ${missing[*]} " == *" etcd-server "* ]] && { systemctl disable --now etcd >/dev/null 2>&1 || true; }
    [[ " ${missing[*]} " == *" docker-registry "* ]] && { systemctl disable --now docker-registry >/dev/null 2>&1 || true; }
    [[ " ${missing[*]} " == *" containerd "* ]] && { systemctl disable --now containerd >/dev/null 2>&1 || true; }
  fi
fi

# kubectl 1.20 for the apiserver tests, next to whatever kubectl is installed.
kubectl120=/opt/bosun/kubectl-1.20/usr/bin/kubectl
if $test_deps && [[ ! -x $kubectl120 ]]; then
  echo "extracting kubectl 1.20 (kubernetes-client) to /opt/bosun/kubectl-1.20"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq kubernetes-client 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq kubernetes-client; }; })
  mkdir -p /opt/bosun/kubectl-1.20
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb /opt/bosun/kubectl-1.20
  rm -rf "$tmp"
fi

# Check what was installed: a package can be "installed" and still lack what we need (a
# different layout, a partial install), and the build's own errors name the cause poorly.
absent=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || absent+=("$1 (command; $2)"); }
need_file() { [[ -e "$1" ]] || absent+=("$1 ($2)"); }
need_cmd protoc "protobuf-compiler"
need_file /usr/include/google/protobuf/descriptor.proto "libprotobuf-dev: the well-known protos"
need_file /usr/include/google/protobuf/timestamp.proto "libprotobuf-dev: the well-known protos"
need_cmd clang "clang"
if ! compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null &&
  ! compgen -G "/usr/lib/*/libclang*.so*" >/dev/null; then
  absent+=("libclang.so (libclang-dev: rocksdb's bindgen)")
fi
need_cmd c++ "build-essential"
# What `bosun up` runs pods with (bosun_up::containerd::NEEDED checks the same at start).
need_cmd containerd "containerd"
need_cmd ctr "containerd"
need_cmd runc "runc"
need_cmd iptables "iptables"
need_cmd iptables-save "iptables"
need_cmd iptables-restore "iptables"
need_cmd ip "iproute2"
need_cmd umoci "umoci"
for plugin in bridge host-local portmap firewall loopback; do
  need_file "/usr/lib/cni/$plugin" "containernetworking-plugins"
done
need_file /bin/busybox "busybox-static"
if [[ -x /bin/busybox ]] && ldd /bin/busybox >/dev/null 2>&1; then
  absent+=("/bin/busybox is dynamically linked (busybox-static: the images need a static one)")
fi
if $test_deps; then
  need_cmd etcd "etcd-server"
  need_cmd etcdctl "etcd-client"
  need_cmd curl "curl"
  need_cmd skopeo "skopeo"
  need_cmd docker-registry "docker-registry"
  need_file "$kubectl120" "kubectl 1.20 from Debian's kubernetes-client"
  if [[ -x $kubectl120 ]] && ! "$kubectl120" version --client >/dev/null 2>&1; then
    absent+=("$kubectl120 does not run")
  fi
fi
if ((${#absent[@]})); then
  echo "install-deps: missing after installing:" >&2
  printf '  %s\n' "${absent[@]}" >&2
  exit 1
fi
