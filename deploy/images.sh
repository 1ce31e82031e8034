#!/usr/bin/env bash
# Builds the two images a cluster needs with no registry, from the host's busybox-static, and
# imports them into containerd's `k8s.io` namespace (the only one CRI sees):
#   docker.io/library/busybox:latest   busybox with its applets (sh, httpd, sleep, wget, ...)
#   bosun.local/pause:latest           the pod sandbox: `sleep infinity` in the same rootfs
# Usage: deploy/images.sh <containerd socket> [work dir]
# Needs busybox-static, umoci and containerd's `ctr` (deploy/install-deps.sh installs them).
set -euo pipefail

sock=${1:?usage: deploy/images.sh <containerd socket> [work dir]}
work=${2:-$(mktemp -d)}
busybox=/bin/busybox
[[ -x $busybox ]] || { echo "images.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ! "$busybox" --list >/dev/null 2>&1; then
  echo "images.sh: $busybox does not run" >&2; exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
  echo "images.sh: $busybox is dynamically linked; install busybox-static" >&2; exit 1
fi

mkdir -p "$work"
oci="$work/busybox"
rm -rf "$oci" "$work/pause" "$work/bundle"
umoci init --layout "$oci"
umoci new --image "$oci:latest"
umoci unpack --rootless --image "$oci:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,var/www,proc,sys,dev,root}
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
umoci repack --image "$oci:latest" "$work/bundle" >/dev/null
umoci config --image "$oci:latest" --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / >/dev/null
# The pause image: the same layer, `sleep infinity` as its entrypoint, alone in its layout.
cp -r "$oci" "$work/pause"
umoci config --image "$work/pause:latest" --tag pause --config.entrypoint /bin/sleep \
  --config.cmd infinity >/dev/null
umoci rm --image "$work/pause:latest"
umoci tag --image "$work/pause:pause" latest
umoci rm --image "$work/pause:pause"

import() { # <layout> <name>
  tar -C "$1" -cf "$1.tar" .
  ctr --address "$sock" -n k8s.io images import --base-name "$2" "$1.tar" >/dev/null
  # The list is read whole first: `ctr ... | grep -q` would fail under pipefail whenever grep
  # exits before ctr has written its last line (SIGPIPE).
  local names
  names=$(ctr --address "$sock" -n k8s.io images ls -q)
  grep -qx "$2:latest" <<<"$names" ||
    { echo "images.sh: $2:latest missing after import" >&2; exit 1; }
}
import "$oci" docker.io/library/busybox
import "$work/pause" bosun.local/pause
rm -rf "$work/bundle"
echo "images.sh: imported docker.io/library/busybox:latest and bosun.local/pause:latest"
