#!/bin/sh
# The Debian packages that burg's tests, demo and benchmarks use, in one place (`npm test`,
# `npm run demo` and .ci/run all start here). Nothing happens when every one is there. When
# some are missing: as root they are installed with apt-get; as anyone else this stops at once
# with the one command to run.
#
#   prereqs.sh        what the demo needs
#   prereqs.sh test   also borgmatic, man-db, lintian, systemd-analyze, mkfs.ext4, losetup, python3-fusepy, and borg 1.4 from the release's backports suite, unpacked beside the
#                     system's borg without replacing it (BURG_BORG14_DIR, default
#                     /opt/burg-test/borg-1.4; run as $BURG_BORG14_DIR/borg), for the tests that
#                     drive both client versions
set -eu
mode=${1:-demo}
borg14_dir=${BURG_BORG14_DIR:-/opt/burg-test/borg-1.4}

need=""
# has PACKAGE COMMAND...: PACKAGE is needed unless one of the commands exists
has() {
  pkg=$1
  shift
  for c in "$@"; do
    if [ -x "$c" ] || command -v "$c" >/dev/null 2>&1; then return 0; fi
  done
  need="$need $pkg"
}
has borgbackup borg
has openssh-server /usr/sbin/sshd
has openssh-client ssh
has socat socat
has sudo sudo
has time /usr/bin/time
if [ "$mode" = test ]; then
  has borgmatic borgmatic
  # the package tests: man pages rendered by man, lintian, the units checked by systemd-analyze
  has man-db man
  has lintian lintian
  has systemd systemd-analyze
  # the disk-full tests: a small ext4 on a loop device
  has e2fsprogs mkfs.ext4 /sbin/mkfs.ext4
  has mount losetup /sbin/losetup
  # the unreadable-sector tests: a FUSE file system in Python
  has python3-fusepy /usr/lib/python3/dist-packages/fusepy.py
fi
want14=no
if [ "$mode" = test ] && ! [ -x "$borg14_dir/borg" ]; then want14=yes; fi

[ -z "$need" ] && [ "$want14" = no ] && exit 0
if [ "$(id -u)" != 0 ]; then
  [ -n "$need" ] && echo "burg: missing Debian packages:$need; install them with: sudo apt-get install -y$need" >&2
  [ "$want14" = yes ] && echo "burg: the tests also need borg 1.4 in $borg14_dir: run sudo sh build/prereqs.sh test" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$need" ]; then
  echo "burg: installing missing Debian packages:$need" >&2
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq$need >/dev/null
fi
[ "$want14" = no ] && exit 0

# borg 1.4: the backports suite of this release, from the mirror apt already uses
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
suite="$codename-backports"
if ! grep -rqs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || { echo "burg: no Debian mirror found in apt's sources for $suite" >&2; exit 1; }
  echo "burg: adding $suite to apt's sources (nothing is installed from it)" >&2
  echo "deb $mirror $suite main" >"/etc/apt/sources.list.d/burg-$suite.list"
fi
echo "burg: unpacking borg 1.4 from $suite into $borg14_dir" >&2
apt-get update -qq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# (apt-get warns that root downloads unsandboxed; only a failure matters)
(cd "$work" && apt-get download -qq "borgbackup/$suite" 2>"$work/log") || {
  cat "$work/log" >&2
  echo "burg: apt-get download borgbackup/$suite failed" >&2
  exit 1
}
rm -rf "$borg14_dir"
mkdir -p "$borg14_dir"
dpkg-deb -x "$work"/borgbackup_*.deb "$borg14_dir/root"
cat >"$borg14_dir/borg" <<WRAP
#!/bin/sh
# borg from $suite, beside the system's borg: its own modules first on Python's path
PYTHONPATH="$borg14_dir/root/usr/lib/python3/dist-packages" exec /usr/bin/python3 "$borg14_dir/root/usr/bin/borg" "\$@"
WRAP
chmod 755 "$borg14_dir/borg"
"$borg14_dir/borg" --version >&2
