#!/bin/sh
# `make demo`: the main job on the bundled default model (stories260k, a real
# tiny TinyStories Llama): build a verified int4 bundle, verify it, and tell
# a story from it.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${LMP_BIN:-$here/bin}"
out="$here/build/demo"
bundle="$out/stories260k.bundle"
mkdir -p "$out"
rm -rf "$bundle"
echo "== lmpack build tests/data/stories260k -o $bundle" >&2
"$bin/lmpack" build "$here/tests/data/stories260k" -o "$bundle"
echo "== lmpack verify $bundle" >&2
"$bin/lmpack" verify "$bundle"
echo "== lmpack verify $bundle --quality --against tests/data/stories260k" >&2
"$bin/lmpack" verify "$bundle" --quality --against "$here/tests/data/stories260k"
echo "== lmpack run $bundle --prompt 'Once upon a time' -n 120 --temperature 0" >&2
"$bin/lmpack" run "$bundle" --prompt "Once upon a time" -n 120 --temperature 0
echo
