#!/bin/sh
# A throwaway copy of this machine without burg's Debian prerequisites, for the test that the
# README's commands get them themselves: run under `unshare -m` (a private mount namespace),
# it lays an overlay over / whose writes go to a tmpfs, so nothing done inside (apt-get purge,
# apt-get install, npm ci) reaches the real machine. Inside a chroot into that overlay the
# prerequisites are purged, and then:
#   fresh-machine.sh CLONE demo     as root: `npm ci && npm run demo` in CLONE
#   fresh-machine.sh CLONE nonroot  as nobody: `sh build/prereqs.sh` in CLONE (must refuse)
# Prints "missing before: ..." and "after: ..." lines about borg for the test to check.
set -eu
clone=$1
mode=$2
base=$(mktemp -d /tmp/burg-fresh-XXXXXX)
mount -t tmpfs tmpfs "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
for d in proc sys dev; do mount --rbind "/$d" "$base/root/$d"; done
# the real /tmp stays visible (the clone is there); its writes go to the overlay too

inside() {
  chroot "$base/root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive CI="${CI:-}" sh -c "$1"
}

# (sudo refuses to go while root has no password unless told; nothing stops services: the
# packages' scripts run invoke-rc.d, which does nothing without an init system)
inside 'SUDO_FORCE_REMOVE=yes apt-get purge -y -qq borgbackup openssh-server openssh-client socat sudo time >/tmp/purge.log 2>&1 &&
  apt-get autoremove --purge -y -qq >>/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }'
inside 'for c in borg sshd ssh socat sudo; do command -v $c >/dev/null && { echo "still there: $c"; exit 1; }; done;
  [ -x /usr/bin/time ] && { echo "still there: /usr/bin/time"; exit 1; }; echo "missing before: borg sshd ssh socat sudo time"'
case "$mode" in
  demo)
    inside "cd '$clone' && npm ci --no-audit --no-fund >/dev/null && npm run demo"
    inside 'echo "after: $(borg --version)"'
    ;;
  nonroot)
    chmod -R a+rX "$clone"
    set +e
    inside "cd '$clone' && setpriv --reuid=nobody --regid=nogroup --clear-groups sh build/prereqs.sh"
    echo "prereqs exit: $?"
    inside 'command -v borg >/dev/null && echo "after: borg installed" || echo "after: borg still missing"'
    ;;
esac
