#!/bin/sh
# Print the download sizes of the browser build (raw and gzip -9, as a web
# server would typically send them) and fail if the core runtime
# (wasm + JS glue) exceeds 2 MB.
set -e
d=$1
total=0
printf '%-16s %10s %10s\n' file bytes gzip
for f in "$d"/*; do
    [ -f "$f" ] || continue
    b=$(wc -c < "$f")
    g=$(gzip -9c < "$f" | wc -c)
    printf '%-16s %10d %10d\n' "$(basename "$f")" "$b" "$g"
done
core=$(( $(wc -c < "$d/lmpack.wasm") + $(wc -c < "$d/lmpack.js") ))
echo "core runtime download (lmpack.wasm + lmpack.js): $core bytes (limit 2000000)"
[ "$core" -lt 2000000 ] || { echo "web: core runtime is over 2 MB" >&2; exit 1; }
