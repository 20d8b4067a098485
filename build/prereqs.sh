#!/bin/sh
# The Debian packages that burg's tests, demo and benchmarks use, in one place (`npm test`,
# `npm run demo` and .ci/run all start here). Nothing happens when every one is there. When
# some are missing: as root they are installed with apt-get; as anyone else this stops at once
# with the one apt-get command to run.
set -eu

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

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "burg: missing Debian packages:$need; install them with: sudo apt-get install -y$need" >&2
  exit 1
fi
echo "burg: installing missing Debian packages:$need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq$need >/dev/null
