/* Split options shared by `lmpack split` and `lmpack build` (included by
 * both programs; prints and exits, so not in the library). */
#ifndef LMP_SPLIT_CLI_H
#define LMP_SPLIT_CLI_H

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "split/split.h"

/* Fault injection for tests: LMPACK_FAULT_AFTER_CHUNKS=N makes the program
 * exit(1) right after the N-th chunk file is written, as a crash would. */
static void split_fault_hook(void *ctx, size_t n)
{
    long *after = ctx;
    if (*after > 0 && (long)n >= *after) {
        fprintf(stderr, "lmpack: LMPACK_FAULT_AFTER_CHUNKS=%ld: exiting after %zu chunk(s)\n",
                *after, n);
        exit(1);
    }
}

static void split_install_fault_hook(lmp_split_opts *o, long *after)
{
    const char *e = getenv("LMPACK_FAULT_AFTER_CHUNKS");
    *after = 0;
    if (e && lmp_parse_int(e, 1, 1000000, after) == 0) {
        o->on_chunk = split_fault_hook;
        o->ctx = after;
    }
}

/* Chunk buffers are tens of MB each, allocated and freed per chunk on
 * several threads; glibc's adaptive mmap threshold would move them onto
 * the heap, where freed memory stays counted in RSS. Keep them mmap'ed. */
static void split_malloc_policy(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

/* Parse one split option at argv[*i]; 1 if consumed. */
static int split_parse_opt(const char *prog, int argc, char **argv, int *i, lmp_split_opts *o)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long n;
    if (!strcmp(a, "--layers-per-chunk")) {
        if (!v || lmp_parse_int(v, 1, 100000, &n))
            lmp_cli_usage_error(prog, "--layers-per-chunk needs a count >= 1");
        o->layers_per_chunk = (int)n;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--zstd-raw-literals")) {
        o->raw_literals = 1;
        return 1;
    }
    if (!strcmp(a, "--zstd-level")) {
        if (!v || lmp_parse_int(v, 1, 19, &n))
            lmp_cli_usage_error(prog, "--zstd-level needs a level 1..19");
        o->zstd_level = (int)n;
        (*i)++;
        return 1;
    }
    return 0;
}

#define SPLIT_OPTS_HELP                                                                     \
    "  --layers-per-chunk N  transformer layers per chunk (default 3)\n"                  \
    "  --zstd-level L        zstd level 1..19 (default 1); output is identical for any -t\n" \
    "  --zstd-raw-literals   store zstd literals uncompressed: 5 percent larger, ~3x\n"   \
    "                        less CPU to load/verify (int4 bytes barely compress)\n"

#endif
