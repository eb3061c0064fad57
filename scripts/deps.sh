#!/bin/sh
# deps.sh - installs the Debian packages named as arguments that are missing.
# As root it runs apt-get; otherwise it prints the apt-get line to run.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "deps: apt-get failed for:$missing" >&2; exit 1; }
else
  echo "deps: missing packages:$missing"
  echo "deps: run: sudo apt-get install$missing"
  exit 1
fi
