/* The bundle's streaming manifest (manifest.json), schema in docs/MANIFEST.md.
 *
 * A bundle folder:
 *   manifest.json            this file
 *   chunks/head.zst          embedding, final norm, lm_head (if untied)
 *   chunks/layers-AA-BB.zst  transformer layers AA..BB (formats/chunk.h)
 *   tokenizer/<file>         tokenizer files carried from the container
 *
 * The manifest is a pure function of the chunk and tokenizer files: it is
 * generated from them (lmp_manifest_scan), and a reader accepts a
 * manifest.json only if it is byte for byte what lmp_manifest_print gives
 * for the data it holds (canonical cJSON printing, fixed key order, every
 * derived value recomputed, a self-hash "manifest_xxh3" over the rest).
 * So every byte of it matters: a change breaks parsing, canonical form or
 * the self-hash, or changes a value verify compares against a file.
 */
#ifndef LMP_MANIFEST_H
#define LMP_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/status.h"
#include "formats/chunk.h"

#define LMP_MANIFEST_FORMAT "lmpack-bundle"
#define LMP_MANIFEST_VERSION 1
#define LMP_MANIFEST_FILE "manifest.json"
#define LMP_MANIFEST_MAX_BYTES (64u << 20)

typedef struct lmp_manifest_file {
    char *file;                 /* "tokenizer/<name>" (owned) */
    uint64_t size;
    char xxh3[LMP_HASH_HEX];
} lmp_manifest_file;

typedef struct lmp_manifest_chunk {
    char *file;                 /* "chunks/head.zst" / "chunks/layers-AA-BB.zst" (owned) */
    int role;                   /* LMP_CHUNK_HEAD / LMP_CHUNK_LAYERS */
    int first_layer, last_layer;
    uint64_t compressed_size, raw_size;
    char xxh3_compressed[LMP_HASH_HEX];
    char xxh3_raw[LMP_HASH_HEX];
    size_t n_tensors;
    lmp_chunk_tensor *tensors;  /* owned; data pointers NULL */
} lmp_manifest_chunk;

typedef struct lmp_manifest {
    char *name;                 /* model name (owned) */
    char *config_json;          /* the model's config.json object, canonical cJSON print */
    size_t n_tokenizer;
    lmp_manifest_file *tokenizer;
    size_t n_chunks;            /* load order: head first, then layers ascending */
    lmp_manifest_chunk *chunks;
    /* derived (filled by parse and scan) */
    int n_layers;               /* config num_hidden_layers */
    uint64_t bundle_bytes;      /* chunk + tokenizer bytes on disk */
    uint64_t n_weights;         /* total elements of all tensors */
} lmp_manifest;

void lmp_manifest_free(lmp_manifest *m); /* NULL: no-op */

/* 1 if `name` is an acceptable file name inside a bundle: "<dir>/<base>"
 * with dir "chunks" or "tokenizer" and base of [A-Za-z0-9._-], not starting
 * with '.', at most 200 bytes (so no "..", no absolute path, no '\\'). */
int lmp_bundle_name_ok(const char *name);
/* Canonical chunk file name ("chunks/head.zst", "chunks/layers-03-05.zst")
 * into buf. */
void lmp_bundle_chunk_name(int role, int first, int last, char *buf, size_t cap);

/* Build the manifest from the files of bundle folder `dir` (chunks/ and
 * tokenizer/; the head chunk's metadata gives name and config). Chunks are
 * read and hashed in parallel on pool (may be NULL). */
lmp_status lmp_manifest_scan(lmp_manifest **out, const char *dir, lmp_pool *pool, lmp_diag *d);

/* Canonical manifest.json text (malloc'd, ends in "\n"); NULL on OOM.
 * Prints whatever m holds (no validation), so tests can forge manifests. */
char *lmp_manifest_print(const lmp_manifest *m);

/* Write dir/manifest.json atomically. */
lmp_status lmp_manifest_write(const lmp_manifest *m, const char *dir, lmp_diag *d);

/* Parse and fully validate manifest text (schema, names, layout rules,
 * canonical form, self-hash). Messages start with "manifest.json: ". */
lmp_status lmp_manifest_parse(lmp_manifest **out, const char *text, size_t len, lmp_diag *d);

/* Read and parse dir/manifest.json. */
lmp_status lmp_manifest_load(lmp_manifest **out, const char *dir, lmp_diag *d);

/* 1 if `path` is a bundle: a folder holding manifest.json, or a path to a
 * file named manifest.json. */
int lmp_bundle_is(const char *path);

/* Folder of a bundle's tokenizer files, for the tokenizer loader: checks
 * the bundle's manifest, then every tokenizer file it lists (size and
 * XXH3-128, LMP_ERR_INTEGRITY naming the file on a mismatch) and returns
 * "<bundle>/tokenizer" in *out (malloc'd). LMP_ERR_IO if the bundle carries
 * no tokenizer/tokenizer.json. `path` as for lmp_bundle_is. */
lmp_status lmp_bundle_tokenizer_path(const char *path, char **out, lmp_diag *d);

/* Metadata JSON the head chunk carries: {"name": name, "config": {...}}
 * from config.json text (malloc'd, canonical). NULL if config_json is not a
 * JSON object. */
char *lmp_manifest_meta_json(const char *name, const char *config_json, size_t config_len);

#endif
