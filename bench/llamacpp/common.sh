# Shared setup of bench/llamacpp/run.sh and check.sh (sourced, POSIX sh).
#
# lcpp_setup: sets $root (repository), $D (scratch folder
# $LMP_BENCH_DIR/llamacpp) and $libdir (the prebuilt llama.cpp libraries);
# installs node-llama-cpp@3.21.1 into $D when absent; compiles mkgguf and
# llversion against build/release/liblmpack.a into $D, and llbench against
# the prebuilt libraries with llama.h / ggml headers taken from the
# llama.cpp source bundle inside the package (llama/gitRelease.bundle, the
# source node-llama-cpp's prebuilt binaries are built from: only include/
# and ggml/include/ are checked out into $D/src, nothing is built from it).
# $llbench is "$D/llbench", or empty (with the reason in $llbench_why) when
# git or the bundle is missing or it does not compile. Returns 1 with a
# message on stdout when something it needs is unavailable (no node/npm,
# registry unreachable, no prebuilt binary for this machine, no `make`
# yet): the callers then exit 0, so an optional `make bench` part never
# fails because llama.cpp cannot be had.
#
# node-llama-cpp is installed with --ignore-scripts and
# NODE_LLAMA_CPP_SKIP_DOWNLOAD=true: its postinstall step could otherwise
# try to download llama.cpp's source and build it. Only the prebuilt
# binaries of @node-llama-cpp/linux-x64 are used (bench.mjs loads them with
# build: "never", skipDownload: true, gpu: false).
LCPP_VERSION=3.21.1

lcpp_setup() {
    root=$(cd "$(dirname "$0")/../.." && pwd)
    bd="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
    D="$bd/llamacpp"
    libdir="$D/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
    mkdir -p "$D"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "llama.cpp comparison skipped: node and npm are needed (apt-get install nodejs npm)"
        return 1
    fi
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$D/node_modules/node-llama-cpp/package.json" 2>/dev/null | head -n 1)
    if [ "$have" != "$LCPP_VERSION" ]; then
        [ -e "$D/package.json" ] || echo '{"name": "lmpack-llamacpp-bench", "private": true}' >"$D/package.json"
        echo "installing node-llama-cpp@$LCPP_VERSION (prebuilt llama.cpp) into $D ..." >&2
        if ! (cd "$D" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm i -E --ignore-scripts --no-audit --no-fund \
                "node-llama-cpp@$LCPP_VERSION" >"$D/npm.log" 2>&1); then
            echo "llama.cpp comparison skipped: 'npm i -E node-llama-cpp@$LCPP_VERSION' failed (registry unreachable?); see $D/npm.log:"
            tail -n 5 "$D/npm.log" | sed 's/^/    /'
            return 1
        fi
    fi
    if [ "$(uname -m)" != x86_64 ] || ! ls "$libdir"/libllama*.so >/dev/null 2>&1; then
        echo "llama.cpp comparison skipped: no prebuilt linux-x64 llama.cpp in $libdir"
        return 1
    fi
    lib="$root/build/release/liblmpack.a"
    if [ ! -e "$lib" ]; then
        echo "llama.cpp comparison skipped: $lib missing (run make first)"
        return 1
    fi
    libs=$(pkg-config --libs libzstd libcjson libxxhash)
    F="-std=c11 -D_GNU_SOURCE -O2 -I$root -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla -Wformat=2"
    if [ ! -x "$D/mkgguf" ] || [ "$root/bench/llamacpp/mkgguf.c" -nt "$D/mkgguf" ] || [ "$lib" -nt "$D/mkgguf" ]; then
        # shellcheck disable=SC2086
        gcc $F $(pkg-config --cflags libcjson) -o "$D/mkgguf" "$root/bench/llamacpp/mkgguf.c" "$lib" \
            $libs -lm -lpthread || return 2
    fi
    if [ ! -x "$D/llversion" ] || [ "$root/bench/llamacpp/llversion.c" -nt "$D/llversion" ]; then
        # shellcheck disable=SC2086
        gcc $F -o "$D/llversion" "$root/bench/llamacpp/llversion.c" -ldl || return 2
    fi
    llbench="$D/llbench"; llbench_why=""
    bundle="$D/node_modules/node-llama-cpp/llama/gitRelease.bundle"
    if [ ! -e "$D/src/include/llama.h" ]; then
        rm -rf "$D/src"
        if ! command -v git >/dev/null 2>&1 || [ ! -e "$bundle" ] ||
            ! git clone -q --no-checkout "$bundle" "$D/src" >/dev/null 2>&1 ||
            ! git -C "$D/src" checkout -q HEAD -- include ggml/include >/dev/null 2>&1; then
            llbench=""; llbench_why="no llama.h (git or $bundle missing)"
        fi
    fi
    if [ -n "$llbench" ] && { [ ! -x "$llbench" ] || [ "$root/bench/llamacpp/llbench.c" -nt "$llbench" ]; }; then
        # shellcheck disable=SC2086
        if ! gcc $F -I"$D/src/include" -I"$D/src/ggml/include" -o "$llbench" "$root/bench/llamacpp/llbench.c" \
                "$libdir"/libllama.v*.so "$libdir"/libggml.v*.so "$libdir/libggml-base.so" \
                -Wl,-rpath,"$libdir" >"$D/llbench.log" 2>&1; then
            llbench=""; llbench_why="llbench.c did not compile against the package's headers ($D/llbench.log)"
        fi
    fi
    return 0
}

# lcpp_gguf SRC_DIR OUT [mkgguf options]: (re)build OUT when absent or
# older than the checkpoint or mkgguf; mkgguf's JSON line goes to OUT.json.
lcpp_gguf() {
    _g_src=$1; _g_out=$2; shift 2
    if [ ! -e "$_g_out" ] || [ ! -e "$_g_out.json" ] || [ "$_g_src/model.safetensors" -nt "$_g_out" ] || [ "$D/mkgguf" -nt "$_g_out" ]; then
        "$D/mkgguf" "$_g_src" -o "$_g_out" "$@" >"$_g_out.json" || return 1
    fi
    return 0
}
