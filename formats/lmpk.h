/* The .lmpk container: one file holding a whole model (config, tokenizer
 * files, tensors in f32/f16/bf16 or grouped int4/int8), laid out so that it
 * can be mmap'ed and every tensor used in place. docs/FORMAT.md has the same
 * description with rationale.
 *
 * Byte layout, version 1. All integers little-endian, offsets absolute (from
 * the start of the file). Regions follow each other in this order with no
 * gap except the zero padding before the data region and between tensors:
 *
 *   [0, 128)           header (fixed size)
 *   [tensors_off, +80*n_tensors)   tensor table, one 80-byte entry per tensor
 *   [files_off,   +24*n_files)     carried-file table, 24-byte entries
 *   [strings_off, +strings_size)   string table: NUL-terminated names
 *   [config_off,  +config_size)    the model's config.json bytes, verbatim
 *   carried files' bytes, back to back in table order
 *   zero padding up to data_off (a multiple of 64)
 *   tensor data in table order, each tensor at a multiple of 64, zero
 *   padding (< 64 bytes) between tensors, the file ends with the last tensor
 *
 * Header (128 bytes):
 *   off  size  field
 *     0     8  magic "LMPK\r\n\x1a\n"
 *     8     4  version = 1
 *    12     4  header_size = 128
 *    16     8  file_size: total bytes of the file
 *    24     4  n_tensors (1 .. 1,000,000)
 *    28     4  n_files   (0 .. 16)
 *    32     8  tensors_off = 128
 *    40     8  files_off   = tensors_off + 80 * n_tensors
 *    48     8  strings_off = files_off + 24 * n_files
 *    56     8  strings_size (<= 64 MiB)
 *    64     8  config_off  = strings_off + strings_size
 *    72     8  config_size (1 .. 1 MiB)
 *    80     8  data_off = round_up(config_off + config_size + sum(file sizes), 64)
 *    88     4  alignment = 64
 *    92     4  flags = 0
 *    96    24  reserved, zero
 *   120     8  meta_xxh3: XXH3-64 (seed 0) of bytes [0, data_off) with this
 *              field's 8 bytes taken as zero (covers header, tables,
 *              strings, config and carried files; not tensor data)
 *
 * Tensor entry (80 bytes):
 *     0  4  name_off: offset of the name inside the string table
 *     4  4  name_len: bytes, without the NUL (1 .. 255); the byte after the
 *           name is NUL, the name has no NUL inside
 *     8  1  kind: 0 f32, 1 f16, 2 bf16, 3 q4, 4 q8 (= lmp_mat_kind)
 *     9  1  scheme: quantize/q4.h id: q4 1 (sym) or 2 (asym), q8 3; floats 0
 *    10  1  ndim (1 .. 4); q4/q8 only 2
 *    11  1  reserved, zero
 *    12  4  group: q4/q8 group length along a row (32, 64, 128); floats 0
 *    16 32  shape[4] (u64; unused dims 0; used dims 1 .. 2^31-1)
 *    48  8  offset of the data (multiple of 64, >= data_off)
 *    56  8  size in bytes: float kinds nelem * element size; q4/q8
 *           shape[0] * lmp_q4_row_bytes(shape[1], group, scheme)
 *    64  8  data_xxh3: XXH3-64 of the data bytes (checked by
 *           lmp_lmpk_verify_data, not on open: opening stays O(metadata))
 *    72  8  reserved, zero
 *
 * Carried-file entry (24 bytes): u32 name_off, u32 name_len (as above),
 * u64 offset, u64 size. Names are plain file names (no '/'), unique.
 *
 * Model rules checked on open: the config parses (lmp_config_parse); the
 * tensors are exactly the ones lmp_config_expected lists (names unique),
 * each with the expected shape; 1-D tensors (norms) are f32.
 */
#ifndef LMP_LMPK_H
#define LMP_LMPK_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/config.h"
#include "runtime/mat.h"

#define LMP_LMPK_MAGIC "LMPK\r\n\x1a\n"
#define LMP_LMPK_VERSION 1u
#define LMP_LMPK_HEADER_SIZE 128u
#define LMP_LMPK_TENSOR_ENTRY 80u
#define LMP_LMPK_FILE_ENTRY 24u
#define LMP_LMPK_ALIGN 64u
#define LMP_LMPK_MAX_DIMS 4
#define LMP_LMPK_MAX_TENSORS 1000000u
#define LMP_LMPK_MAX_FILES 16u
#define LMP_LMPK_MAX_NAME 255u
#define LMP_LMPK_MAX_STRINGS (64u << 20)
#define LMP_LMPK_MAX_CONFIG (1u << 20)

typedef struct lmp_lmpk_tensor {
    const char *name;        /* points into the mapping (NUL-terminated) */
    lmp_mat_kind kind;
    int scheme;              /* quantize/q4.h scheme id (q4: 1/2, q8: 3), else 0 */
    int group;               /* q4/q8 group length, else 0 */
    int ndim;
    int64_t shape[LMP_LMPK_MAX_DIMS];
    uint64_t nelem;
    uint64_t row_bytes;      /* 2-D: bytes of one stored row; 1-D: size */
    uint64_t offset, size;
    uint64_t data_xxh3;
    const uint8_t *data;     /* into the mapping */
    int layer;               /* decoder layer (lmp_config_expected), -1 if none */
} lmp_lmpk_tensor;

typedef struct lmp_lmpk lmp_lmpk;

/* Open and validate `path` (all rules above, LMP_ERR_FORMAT naming the file
 * and rule; LMP_ERR_MODEL / LMP_ERR_UNSUPPORTED from the config checks).
 * *out is owned by the caller (lmp_lmpk_close). */
lmp_status lmp_lmpk_open(lmp_lmpk **out, const char *path, lmp_diag *d);
void lmp_lmpk_close(lmp_lmpk *pk); /* NULL: no-op */

/* Validate a whole container image in memory (fuzzing, tests); `name` is
 * used in messages only. Same rules as lmp_lmpk_open. */
lmp_status lmp_lmpk_check_bytes(const uint8_t *buf, size_t len, const char *name, lmp_diag *d);

/* Check every tensor's data_xxh3 (reads all the data). */
lmp_status lmp_lmpk_verify_data(const lmp_lmpk *pk, lmp_diag *d);

const char *lmp_lmpk_path(const lmp_lmpk *pk);
const lmp_config *lmp_lmpk_config(const lmp_lmpk *pk);
/* The stored config.json bytes (not NUL-terminated; len in *len). */
const char *lmp_lmpk_config_json(const lmp_lmpk *pk, size_t *len);
uint64_t lmp_lmpk_file_size(const lmp_lmpk *pk);

/* Tensors in table (= file) order, which convert makes the config's
 * canonical order (lmp_config_expected). */
size_t lmp_lmpk_count(const lmp_lmpk *pk);
const lmp_lmpk_tensor *lmp_lmpk_at(const lmp_lmpk *pk, size_t i);
const lmp_lmpk_tensor *lmp_lmpk_find(const lmp_lmpk *pk, const char *name);
/* A matrix view of a 2-D tensor (data in the mapping, not owned). */
lmp_mat lmp_lmpk_mat(const lmp_lmpk_tensor *t);
/* Drop t's pages from memory (streaming passes). */
void lmp_lmpk_release(const lmp_lmpk *pk, const lmp_lmpk_tensor *t);

/* Carried files (tokenizer.json, ...). */
size_t lmp_lmpk_nfiles(const lmp_lmpk *pk);
void lmp_lmpk_file_at(const lmp_lmpk *pk, size_t i, const char **name, const uint8_t **data,
                      size_t *len);
/* Bytes of the carried file `name`, or NULL (and *len 0) if absent.
 * Points into the mapping; valid until lmp_lmpk_close. */
const uint8_t *lmp_lmpk_file(const lmp_lmpk *pk, const char *name, size_t *len);

/* Bytes a stored tensor of this kind/shape needs (0 with a message in d if
 * the combination is invalid: bad kind, q4/q8 not 2-D, bad group/scheme,
 * overflow). `what` names the tensor in messages. */
uint64_t lmp_lmpk_tensor_bytes(lmp_mat_kind kind, int ndim, const int64_t *shape, int group,
                               int scheme, uint64_t *row_bytes, const char *what, lmp_diag *d);

/* ---- writer ----------------------------------------------------------------
 * Declare everything up front (the layout follows from the declarations),
 * then append each tensor's bytes in declaration order; finish fills in the
 * data hashes and the header checksum (seek back to the start) and renames
 * the temporary into place. Deterministic: same inputs, same bytes. */
typedef struct lmp_lmpkw_desc {
    const char *name;
    lmp_mat_kind kind;
    int scheme, group;
    int ndim;
    int64_t shape[LMP_LMPK_MAX_DIMS];
} lmp_lmpkw_desc;

typedef struct lmp_lmpk_blob {
    const char *name;
    const void *data;
    size_t size;
} lmp_lmpk_blob;

typedef struct lmp_lmpkw lmp_lmpkw;

/* config_json: the config.json bytes (must parse, and the tensors must be
 * what it expects: the writer applies the reader's model rules up front).
 * files: carried files, copied at open. */
lmp_status lmp_lmpkw_open(lmp_lmpkw **out, const char *path, const char *config_json,
                          size_t config_len, const lmp_lmpk_blob *files, size_t n_files,
                          const lmp_lmpkw_desc *descs, size_t n, lmp_diag *d);
/* Bytes each declared tensor takes (index in declaration order). */
uint64_t lmp_lmpkw_tensor_size(const lmp_lmpkw *w, size_t i);
/* Append bytes of the current tensor; may span tensors. */
lmp_status lmp_lmpkw_write(lmp_lmpkw *w, const void *data, size_t nbytes, lmp_diag *d);
/* Start the kernel's writeback of the bytes written so far (Linux
 * sync_file_range, no waiting), so the fsync in finish has little left to
 * wait for. Best effort, never fails (a write error shows at finish). */
void lmp_lmpkw_start_writeback(lmp_lmpkw *w);
lmp_status lmp_lmpkw_finish(lmp_lmpkw *w, lmp_diag *d); /* frees w */
void lmp_lmpkw_abort(lmp_lmpkw *w);                      /* frees w; NULL no-op */

#endif
