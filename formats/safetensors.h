/* Safetensors reader (mmap, validated) and streaming writer.
 *
 * File layout (https://github.com/huggingface/safetensors), all little-endian:
 *   u64 N                header length in bytes, N <= 100,000,000
 *   u8  header[N]        UTF-8 JSON object: {"__metadata__": {str: str},
 *                        "<name>": {"dtype": "F32", "shape": [..],
 *                                   "data_offsets": [begin, end]}, ...}
 *                        may be padded at the end with spaces (0x20)
 *   u8  buffer[]         the rest of the file; offsets are relative to it
 * Rules enforced (as the reference implementation does): known dtype;
 * shape of non-negative integers; begin <= end; prod(shape) * size(dtype) ==
 * end - begin without overflow; tensors sorted by begin cover the buffer
 * exactly (no gap, no overlap, no trailing bytes); names unique; the header
 * lies inside the file, is valid UTF-8 and a JSON object.
 *
 * A "set" is one file or a sharded checkpoint (model.safetensors.index.json
 * with "weight_map": {tensor: shard file}); each shard is mapped once; a
 * tensor listed in the index must be in its shard and nowhere else, and a
 * shard may not hold tensors the index does not list.
 */
#ifndef LMP_SAFETENSORS_H
#define LMP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/dtype.h"

#define LMP_ST_MAX_DIMS 8
#define LMP_ST_MAX_HEADER 100000000ull

typedef struct lmp_st_tensor {
    const char *name;          /* owned by the set */
    lmp_dtype dtype;
    int ndim;                  /* 0 for a scalar */
    int64_t shape[LMP_ST_MAX_DIMS];
    uint64_t nelem;            /* product of shape (1 for a scalar) */
    const uint8_t *data;       /* points into the mapping; NULL if nbytes 0 */
    uint64_t nbytes;
    int shard;                 /* index into the set's files */
} lmp_st_tensor;

typedef struct lmp_st lmp_st;

/* Open `path`: a .safetensors file, a model.safetensors.index.json (any
 * path ending in .json is read as an index), or a folder holding either
 * (index preferred, else model.safetensors, else its only *.safetensors).
 * Shards are numbered in sorted file-name order (docs/SAFETENSORS.md).
 * On success *out is owned by the caller (lmp_st_close). */
lmp_status lmp_st_open(lmp_st **out, const char *path, lmp_diag *d);
void lmp_st_close(lmp_st *st); /* NULL: no-op */

size_t lmp_st_count(const lmp_st *st);
/* Tensors in a stable order: by shard, then by data offset. */
const lmp_st_tensor *lmp_st_at(const lmp_st *st, size_t i);
const lmp_st_tensor *lmp_st_find(const lmp_st *st, const char *name);
/* Number of files and the name of file i (as given / as in the index). */
size_t lmp_st_nfiles(const lmp_st *st);
const char *lmp_st_file(const lmp_st *st, size_t i);
/* __metadata__ entries of file `shard` (key i / value i), count. */
size_t lmp_st_meta_count(const lmp_st *st, int shard);
void lmp_st_meta_at(const lmp_st *st, int shard, size_t i, const char **key, const char **val);
/* Drop the pages of t's data from memory once used (streaming passes). */
void lmp_st_release(const lmp_st *st, const lmp_st_tensor *t);

/* Validate a whole safetensors file image held in memory (header and
 * buffer), for fuzzing and tests; `fname` is used in messages only. */
lmp_status lmp_st_check_bytes(const uint8_t *buf, size_t len, const char *fname, lmp_diag *d);

/* Convert a tensor (F32, F16 or BF16) to float32; dst has t->nelem floats. */
lmp_status lmp_st_to_f32(const lmp_st_tensor *t, float *dst, lmp_diag *d);

/* Streaming writer: declare every tensor first (the header needs all the
 * offsets), then write each tensor's bytes in declaration order. Written
 * atomically (temporary name, renamed by lmp_stw_finish). Tensors are laid
 * out in declaration order. */
typedef struct lmp_stw lmp_stw;
typedef struct lmp_stw_desc {
    const char *name;
    lmp_dtype dtype;
    int ndim;
    int64_t shape[LMP_ST_MAX_DIMS];
} lmp_stw_desc;

/* meta_kv: NULL or n_meta pairs {key0, val0, key1, val1, ...}. */
lmp_status lmp_stw_open(lmp_stw **out, const char *path, const lmp_stw_desc *descs, size_t n,
                        const char *const *meta_kv, size_t n_meta, lmp_diag *d);
/* Append bytes of the current tensor(s); total must end up exactly the sum
 * of all tensor sizes (checked by finish). */
lmp_status lmp_stw_write(lmp_stw *w, const void *data, size_t nbytes, lmp_diag *d);
lmp_status lmp_stw_finish(lmp_stw *w, lmp_diag *d); /* frees w */
void lmp_stw_abort(lmp_stw *w);                      /* frees w; NULL no-op */

#endif
