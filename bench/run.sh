#!/bin/sh
# `make bench`: runs every bench/<part>.sh in name order. Each part prints
# rows of the table "| benchmark | value | unit | notes |" on stdout.
# Env: LMP_BIN (programs), LMP_BENCH_BIN (bench programs), LMP_BENCH_DIR
# (scratch folder for generated models; default /tmp/lmpack-bench).
set -e
here=$(dirname "$0")
export LMP_BENCH_DIR="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
mkdir -p "$LMP_BENCH_DIR"
echo "| benchmark | value | unit | notes |"
echo "|---|---|---|---|"
for part in "$here"/[0-9]*.sh; do
    [ -e "$part" ] || continue
    sh "$part"
done
