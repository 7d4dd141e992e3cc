#!/bin/sh
# Install the Debian packages lmpack builds against, if any is missing.
# Used by `make deps` and triggered automatically by make when pkg-config
# cannot find them. apt-get runs with sudo when we are not root.
set -e
PKGS="libzstd-dev libcjson-dev libxxhash-dev check pkg-config"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "lmpack: installing missing packages:$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >&2
