#!/usr/bin/env bash
# Runs a command of the README on a fresh Debian machine, made here: a debootstrap'd Debian 12
# (minbase) with only what a fresh machine of this kind has (gcc, git, curl, python3 and this
# machine's Rust toolchain, bind-mounted), in a chroot. It checks that the README's set-up
# commands install everything they need. Run as root; downloads about 150 MB of packages.
#
#   deploy/fresh-machine-test.sh                 the README's test command (deploy/test.sh)
#   deploy/fresh-machine-test.sh CMD...          any command, run in a clone of this repository
#                                                (e.g. `cargo build -p etcd-client`)
#   BOSUN_FRESH_ROOT=/path                        where the chroot goes (default
#                                                /var/tmp/bosun-fresh; kept between runs, the
#                                                clone and the build directory are new each run)
#   BOSUN_FRESH_SYS=1                             also the host's /sys (cgroups) and a private
#                                                /run, so that the run command itself
#                                                (deploy/run.sh: bosun up with containerd) runs
#                                                in the chroot; its data dir is inside it
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${BOSUN_FRESH_ROOT:-/var/tmp/bosun-fresh}"
cmd=("$@")
((${#cmd[@]})) || cmd=(deploy/test.sh)

if [[ ! -x $root/bin/bash ]]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
fi

mounts=()
bind() {
  mkdir -p "$root$2"
  mountpoint -q "$root$2" || { mount --bind "$1" "$root$2" && mounts=("$root$2" "${mounts[@]}"); }
}
cleanup() {
  for m in "${mounts[@]}"; do umount -l "$m" || true; done
  rm -rf "$root/root/bosun" "$root/root/target"
}
trap cleanup EXIT
if [[ ${BOSUN_FRESH_SYS:-} == 1 ]]; then
  # On a machine, / is a mount point; runc makes it a slave mount and fails (EINVAL) on a
  # chroot's plain directory. Mounted first (the others go on top of it), unmounted last.
  mountpoint -q "$root" || { mount --bind "$root" "$root" && mounts=("$root"); }
fi
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && mounts=("$root/proc" "${mounts[@]}"); }
if [[ ${BOSUN_FRESH_SYS:-} == 1 ]]; then
  mountpoint -q "$root/sys" || {
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" && mounts=("$root/sys" "${mounts[@]}")
  }
  mountpoint -q "$root/run" || { mount -t tmpfs tmpfs "$root/run" && mounts=("$root/run" "${mounts[@]}"); }
fi
bind /dev /dev
bind /dev/pts /dev/pts
bind "${RUSTUP_HOME:-$HOME/.rustup}" /root/.rustup
bind "${CARGO_HOME:-$HOME/.cargo}" /root/.cargo
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Packages must not start services in the chroot (a fresh machine runs no service manager).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
chroot "$root" bash -c 'export DEBIAN_FRONTEND=noninteractive
  dpkg -s gcc libc6-dev git curl python3 ca-certificates >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev git curl python3 ca-certificates >/dev/null; }'
rm -rf "$root/root/bosun"
git clone -q "$repo" "$root/root/bosun"
printf -v quoted '%q ' "${cmd[@]}"
chroot "$root" bash -c "cd /root/bosun && export PATH=/root/.cargo/bin:\$PATH CARGO_TARGET_DIR=/root/target && $quoted"
