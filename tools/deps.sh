#!/usr/bin/env bash
# tools/deps.sh {demo|test|bench} — installs the Debian packages that target
# needs and that are missing. As root it runs apt-get; otherwise it prints
# the command to run. Nothing is downloaded from anywhere but Debian.
set -euo pipefail
target=${1:-test}
base="gcc make binutils libc6-dev procps"
case "$target" in
  demo)  pkgs="$base python3 sqlite3" ;;
  test)  pkgs="$base clang python3 sqlite3 perl git valgrind" ;;
  bench) pkgs="$base python3 sqlite3 valgrind gnuplot-nox libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0" ;;
  *) echo "usage: $0 {demo|test|bench}" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages:$missing" >&2
  echo "install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
