/* Cutting a model into a bundle (chunks + tokenizer files + manifest.json).
 *
 * The source is described abstractly (tensors with their bytes, config.json
 * text, tokenizer files), so the .lmpk container, tests and `lmpack build`
 * all feed the same writer. Tensors named "model.layers.<i>.*" go to the
 * layer chunk covering i; every other tensor goes to chunks/head.zst, in
 * source order. Output is byte-identical whatever the thread count.
 *
 * Atomicity: everything is written into "<out_dir>.tmp.<pid>", then the
 * manifest is generated from those files (lmp_manifest_scan, the same code
 * `lmpack manifest` runs) and the folder is renamed to out_dir. A failure
 * removes the temporary folder; a crash leaves only "*.tmp.<pid>", never a
 * folder named out_dir.
 */
#ifndef LMP_SPLIT_H
#define LMP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/status.h"
#include "formats/chunk.h"
#include "formats/lmpk.h"

typedef struct lmp_split_file {
    const char *name;        /* plain file name, e.g. "tokenizer.json" */
    const uint8_t *data;
    size_t size;
} lmp_split_file;

typedef struct lmp_split_src {
    const char *name;        /* model name recorded in the manifest */
    const char *config_json; /* config.json text (a JSON object) */
    size_t config_len;
    size_t n_tensors;
    const lmp_chunk_tensor *tensors; /* name/kind/shape/group/scheme/size/data */
    size_t n_files;
    const lmp_split_file *files;     /* tokenizer files */
    /* Optional: called once per tensor (index into tensors) after its bytes
     * were copied into a chunk, so a mapped source can drop its pages and
     * memory stays bounded by a few chunks. May run on a worker thread. */
    void (*release)(void *ctx, size_t tensor);
    void *release_ctx;
} lmp_split_src;

typedef struct lmp_split_opts {
    int layers_per_chunk;    /* >= 1 (default 3) */
    int zstd_level;          /* 1..19 (default LMP_SPLIT_DEFAULT_LEVEL) */
    /* 1: zstd stores literals uncompressed (ZSTD_c_literalCompressionMode
     * off). Int4 weights are near-random bytes, so Huffman-coding them gains
     * ~5 % of size but costs most of the load time; raw literals make the
     * chunks ~5 % larger and loading/verifying ~3x cheaper in CPU. Standard
     * zstd frames either way (readers need no change). Default 0. */
    int raw_literals;
    /* Called after each chunk file is written (n = chunks written so far);
     * programs use it for fault injection in tests. May be NULL. */
    void (*on_chunk)(void *ctx, size_t n);
    void *ctx;
} lmp_split_opts;

#define LMP_SPLIT_DEFAULT_LAYERS 3
#define LMP_SPLIT_DEFAULT_LEVEL 1

void lmp_split_opts_default(lmp_split_opts *o);

/* Layer index of a tensor name "model.layers.<i>.<rest>", or -1. */
int lmp_split_layer_of(const char *name);

/* Write the bundle out_dir (must not exist). pool may be NULL. */
lmp_status lmp_split_write(const lmp_split_src *src, const char *out_dir,
                           const lmp_split_opts *o, lmp_pool *pool, lmp_diag *d);

/* Remove a bundle-shaped folder (manifest.json, chunks/, tokenizer/ and
 * their plain files) — used to clean up temporaries. Best effort. */
void lmp_split_remove_tree(const char *dir);

#endif

/* ---- from an .lmpk container ------------------------------------------- */

/* A split source over an open container (tensors in container order, its
 * config.json bytes, its carried files; pages of each tensor are released
 * once it is in a chunk). Arrays are malloc'd into *tensors
 * and *files (free() both); data points into pk, which must stay open. */
lmp_status lmp_split_src_from_lmpk(const lmp_lmpk *pk, const char *name, lmp_split_src *src,
                                   lmp_chunk_tensor **tensors, lmp_split_file **files,
                                   lmp_diag *d);

/* Model name from a path: last component without a trailing '/' or a
 * ".lmpk" suffix, into buf. */
void lmp_split_default_name(const char *path, char *buf, size_t cap);
