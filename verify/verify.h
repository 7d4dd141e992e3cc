/* Bundle integrity verification (the "integrity half" of `lmpack verify`).
 *
 * Checks, reporting every problem found (one callback per problem, in a
 * fixed order: manifest, tokenizer files, chunks in load order, unlisted
 * files, tensor coverage):
 *  - manifest.json parses, follows the schema, is canonical and its
 *    self-hash matches (manifest/manifest.h);
 *  - every listed file exists with the listed size and XXH3-128 hashes
 *    (chunks: compressed hash before decompressing, then raw size and hash);
 *  - each chunk header agrees with the manifest (role, layers, tensor table),
 *    the head chunk's metadata (name, config) equals the manifest's;
 *  - no unlisted file under chunks/ or tokenizer/;
 *  - every tensor the config needs (lmp_config_expected) is present exactly
 *    once, with its shape, in the chunk of its layer, and nothing else is.
 * Chunks are checked in parallel on the pool; the report order does not
 * depend on the thread count.
 */
#ifndef LMP_VERIFY_H
#define LMP_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/status.h"

/* file: bundle-relative name ("chunks/head.zst", "manifest.json", or "" for
 * bundle-wide problems); what: the problem, e.g. "xxh3 mismatch (compressed)". */
typedef void (*lmp_verify_cb)(void *ctx, const char *file, const char *what);

typedef struct lmp_verify_report {
    size_t problems;
    size_t files_checked;
    uint64_t bytes_checked;   /* bytes of files read and hashed (manifest excluded) */
} lmp_verify_report;

/* Returns LMP_OK when intact; LMP_ERR_INTEGRITY when problems were found
 * (all reported through cb, the first also in d); another status (d set,
 * cb not called) when dir is not a bundle at all (not a folder, or neither
 * manifest.json nor chunks/ in it). pool may be NULL; cb may be NULL. */
lmp_status lmp_bundle_verify(const char *dir, lmp_pool *pool, lmp_verify_cb cb, void *ctx,
                             lmp_verify_report *r, lmp_diag *d);

#endif
