#!/bin/sh
# Fetch the C sources the browser build needs but Debian ships only as
# binaries: zstd (decoder) and cJSON. They come from Debian's own source
# packages (the same mirror and suite apt already uses, as deb-src), unpacked
# with Debian's patches applied, into a private folder. System apt state is not
# touched and nothing is committed to the project (see docs/WEB.md).
#   usage: web/fetch-sources.sh OUTDIR
#   result: OUTDIR/zstddeclib.c, OUTDIR/cJSON.c, OUTDIR/cjson/cJSON.h, OUTDIR/VERSIONS
# Cached: when OUTDIR/VERSIONS exists nothing is fetched again.
set -e
out=$1
[ -n "$out" ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ -s "$out/VERSIONS" ] && exit 0
mkdir -p "$out"
out=$(cd "$out" && pwd)
apt_dir=$out/apt
rm -rf "$apt_dir"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/src"
n=0
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    sed 's/^Types:.*/Types: deb-src/' "$f" > "$apt_dir/sources.list.d/src$n.sources"
done
: > "$apt_dir/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -E '^deb ' "$f" | sed 's/^deb /deb-src /' >> "$apt_dir/sources.list" || true
done
APT_OPTS="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=$apt_dir/sources.list.d
  -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache=$apt_dir/cache -o Debug::NoLocking=1
  -o APT::Sandbox::User=root"
echo "web: fetching Debian source packages libzstd and cjson (once; cached in $out)" >&2
# shellcheck disable=SC2086
apt-get -qq $APT_OPTS update >&2
cd "$apt_dir/src"
# Newest version first; a mirror may list a version it does not serve (seen:
# libzstd's security update listed, its files 404), so fall back to the next.
fetch_src() {
    # shellcheck disable=SC2086
    for v in $(apt-cache $APT_OPTS showsrc "$1" | sed -n 's/^Version: //p' | sort -u -r -V); do
        # shellcheck disable=SC2086
        if apt-get -qq $APT_OPTS source "$1=$v" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 \
           && ls -d "$1"-*/ >/dev/null 2>&1; then
            return 0
        fi
        echo "web: $1 $v could not be fetched, trying an older version" >&2
    done
    return 1
}
fetch_src libzstd || true
fetch_src cjson || true
zdir=$(ls -d libzstd-*/ 2>/dev/null | head -1)
cdir=$(ls -d cjson-*/ 2>/dev/null | head -1)
[ -n "$zdir" ] && [ -n "$cdir" ] || { echo "web: apt-get source libzstd cjson did not unpack both packages" >&2; exit 1; }
(cd "$zdir/build/single_file_libs" && python3 combine.py -r ../../lib -x legacy/zstd_legacy.h \
    -o "$out/zstddeclib.c" zstddeclib-in.c > /dev/null)
mkdir -p "$out/cjson"
cp "$cdir/cJSON.c" "$out/cJSON.c"
cp "$cdir/cJSON.h" "$out/cjson/cJSON.h"
ls ./*.dsc | sed 's|^\./||' > "$out/VERSIONS"
cd "$out" && rm -rf "$apt_dir"
