/* Bundle chunks: self-describing, zstd-compressed pieces of a model.
 *
 * A chunk file (chunks/head.zst, chunks/layers-00-02.zst, ...) is exactly
 * ONE zstd frame whose header records the content size. Decompressed, the
 * chunk "raw image" is (all integers little-endian):
 *
 *   offset size  field
 *    0     8     magic "LMPKCHNK"
 *    8     4     u32 version = 1
 *   12     4     u32 role: 0 = head (embedding, final norm, lm_head),
 *                          1 = layers
 *   16     4     u32 first_layer  (head: 0)
 *   20     4     u32 last_layer   (head: 0; layers: first <= last)
 *   24     4     u32 n_tensors    (1 .. 4096)
 *   28     4     u32 align        (power of two, 8 .. 4096; lmpack writes 64)
 *   32     8     u64 table_size   (bytes of the tensor table)
 *   40     8     u64 meta_size    (bytes of metadata JSON after the table)
 *   48     8     u64 data_offset  = align_up(64 + table_size + meta_size, align)
 *   56     8     u64 data_size    = raw size - data_offset
 *   64     table_size bytes: n_tensors entries, each
 *            0  u32 name_len (1 .. 255)
 *            4  u32 kind     (lmp_mat_kind: 0 f32, 1 f16, 2 bf16, 3 q4, 4 q8)
 *            8  u32 ndim     (1 .. 4)
 *           12  u32 group    (q4/q8: group length >= 1; floats: 0)
 *           16  u32 scheme   (q4: quantize/q4.h scheme id; otherwise 0)
 *           20  u32 reserved = 0
 *           24  i64 shape[4] (dims < ndim >= 1, the others 0)
 *           56  u64 offset   (relative to data_offset)
 *           64  u64 size     (bytes)
 *           72  name bytes (printable ASCII), then zero bytes up to a
 *               multiple of 8
 *   then   meta_size bytes: empty, or a UTF-8 JSON object (the head chunk
 *          carries {"name": ..., "config": {...}} here)
 *   then   zero bytes up to data_offset
 *   then   the tensor data: tensor i at data_offset + offset_i, with
 *          offset_0 = 0, offset_i = align_up(offset_{i-1} + size_{i-1}, align),
 *          zero bytes between tensors, data_size = offset_last + size_last.
 * Rules enforced by the reader: every field above, names unique within the
 * chunk, float sizes == prod(shape) * element size, q4/q8 sizes as their
 * row format defines (lmp_chunk_tensor_bytes), no byte unaccounted for.
 *
 * Tensor data keeps the container's layout, so a chunk's raw image can be
 * used in place (64-byte aligned buffer) by the runtime.
 */
#ifndef LMP_CHUNK_H
#define LMP_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define LMP_CHUNK_MAGIC "LMPKCHNK"
#define LMP_CHUNK_VERSION 1u
#define LMP_CHUNK_HEADER 64u
/* The largest raw image (bytes) any reader accepts or allocates for. */
#define LMP_CHUNK_RAW_MAX ((uint64_t)1 << 40)
#define LMP_CHUNK_ENTRY 72u
#define LMP_CHUNK_NAME_MAX 255
#define LMP_CHUNK_MAX_TENSORS 4096u
#define LMP_CHUNK_MAX_DIMS 4
#define LMP_CHUNK_ALIGN 64u

enum { LMP_CHUNK_HEAD = 0, LMP_CHUNK_LAYERS = 1 };

/* Hex of an XXH3-128 hash in canonical (big-endian) byte order + NUL. */
#define LMP_HASH_HEX 33

typedef struct lmp_chunk_tensor {
    char name[LMP_CHUNK_NAME_MAX + 1];
    int kind;               /* lmp_mat_kind value */
    int ndim;
    int64_t shape[LMP_CHUNK_MAX_DIMS];
    int group;
    int scheme;
    uint64_t offset;        /* relative to the data area */
    uint64_t size;
    const uint8_t *data;    /* reader: into the raw image; writer: source bytes */
} lmp_chunk_tensor;

/* A parsed chunk. tensors is owned; raw/meta point into the image the
 * chunk was parsed from (owned only when `owned` is set, see lmp_chunk_load). */
typedef struct lmp_chunk {
    int role;
    int first_layer, last_layer;
    size_t n_tensors;
    lmp_chunk_tensor *tensors;
    const char *meta;       /* meta_size bytes, not NUL-terminated; NULL if 0 */
    size_t meta_size;
    const uint8_t *raw;
    size_t raw_size;
    uint8_t *owned;         /* the raw image when lmp_chunk_load allocated it */
} lmp_chunk;

/* "f32", "f16", "bf16", "q4", "q8" (NULL if unknown) and back (-1). */
const char *lmp_chunk_kind_name(int kind);
int lmp_chunk_kind_from_name(const char *s);

/* Bytes of a tensor of this kind/shape/group (prod of shape * element size
 * for floats; q4/q8: rows * row bytes as quantize/ defines). 0 when the
 * combination is invalid or overflows. */
uint64_t lmp_chunk_tensor_bytes(int kind, int ndim, const int64_t *shape, int group, int scheme);

/* XXH3-128 of buf in canonical big-endian hex (32 chars + NUL). */
void lmp_hash_hex(const void *buf, size_t n, char out[LMP_HASH_HEX]);

/* Build a raw image: tensors' name/kind/ndim/shape/group/scheme/size/data
 * are read (offsets are computed); meta may be NULL. On success *out is a
 * 64-byte aligned buffer (free()) of *out_size bytes. */
lmp_status lmp_chunk_encode(int role, int first_layer, int last_layer,
                            const lmp_chunk_tensor *tensors, size_t n, const char *meta,
                            size_t meta_size, uint8_t **out, size_t *out_size, lmp_diag *d);

/* Compress a raw image as one zstd frame (content size recorded, no zstd
 * checksum, single-threaded: identical bytes for identical input and
 * level). *out is malloc'd. */
lmp_status lmp_chunk_compress(const uint8_t *raw, size_t n, int level, uint8_t **out,
                              size_t *out_size, lmp_diag *d);
/* Same, with raw_literals = 1: literals stored uncompressed
 * (ZSTD_c_literalCompressionMode = off); lmp_chunk_compress is raw_literals 0. */
lmp_status lmp_chunk_compress_opts(const uint8_t *raw, size_t n, int level, int raw_literals,
                                   uint8_t **out, size_t *out_size, lmp_diag *d);

/* Decompress one zstd frame. The frame must hold exactly one frame with
 * its content size; when expect_raw != UINT64_MAX that size must equal it,
 * otherwise it must be within what the compressed bytes can produce and at
 * most max_raw. *out: 64-byte aligned, free(). fname for messages. */
lmp_status lmp_chunk_decompress(const uint8_t *z, size_t zn, uint64_t expect_raw,
                                uint64_t max_raw, uint8_t **out, size_t *out_size,
                                const char *fname, lmp_diag *d);

/* Validate a raw image and describe it. c->tensors is allocated (release
 * with lmp_chunk_free); everything else points into raw. */
lmp_status lmp_chunk_parse(lmp_chunk *c, const uint8_t *raw, size_t n, const char *fname,
                           lmp_diag *d);

/* What a manifest says about a chunk file (any field may be left unset:
 * sizes UINT64_MAX, hashes ""). */
typedef struct lmp_chunk_expect {
    uint64_t compressed_size;
    uint64_t raw_size;
    char xxh3_compressed[LMP_HASH_HEX];
    char xxh3_raw[LMP_HASH_HEX];
} lmp_chunk_expect;

/* Read a chunk file: check size and compressed hash BEFORE decompressing,
 * then raw size and raw hash, then parse. fname names the file in messages
 * (e.g. "chunks/head.zst"). Mismatches are LMP_ERR_INTEGRITY. On success c
 * owns its raw image. If hashes are given as "" they are computed into e
 * (so a caller can learn them). */
lmp_status lmp_chunk_load(lmp_chunk *c, const char *path, const char *fname,
                          lmp_chunk_expect *e, lmp_diag *d);
/* Same from compressed bytes already in memory. */
lmp_status lmp_chunk_load_mem(lmp_chunk *c, const uint8_t *z, size_t zn, const char *fname,
                              lmp_chunk_expect *e, lmp_diag *d);

/* Decompress the single zstd frame z[0, zn) into dst[0, raw) -- the frame
 * must record exactly `raw` as its content size (else LMP_ERR_INTEGRITY
 * "raw size mismatch") -- and write the XXH3-128 hex of the output to
 * raw_hex. Block by block: each block is hashed right after it is decoded,
 * while still in cache (one pass over the raw bytes, no extra buffer). */
lmp_status lmp_chunk_decompress_hashed(const uint8_t *z, size_t zn, uint8_t *dst, size_t raw,
                                       char raw_hex[LMP_HASH_HEX], const char *fname,
                                       lmp_diag *d);

/* Thread CPU seconds spent in the phases of lmp_chunk_load_into (added to). */
typedef struct lmp_chunk_times {
    double read_s;        /* open, size check, map (MAP_POPULATE) */
    double hash_s;        /* XXH3 of the compressed bytes */
    double decompress_s;  /* decompression + raw XXH3 (fused) */
    double parse_s;       /* header/table validation */
} lmp_chunk_times;

/* lmp_chunk_load into a caller-owned buffer: e->raw_size must be known and
 * <= cap, dst 64-byte aligned. Same checks in the same order (size before
 * reading, compressed hash before decompressing, raw size and raw hash, then
 * parse) and the same messages; on success c points into dst (c->owned
 * stays NULL: dst must outlive c). On failure dst holds garbage that must
 * not be used. times may be NULL. */
lmp_status lmp_chunk_load_into(lmp_chunk *c, const char *path, const char *fname,
                               lmp_chunk_expect *e, uint8_t *dst, size_t cap,
                               lmp_chunk_times *times, lmp_diag *d);

/* Free tensors (and the owned image). Zeroed / NULL: no-op. */
void lmp_chunk_free(lmp_chunk *c);

/* Fuzzing entry: decompress (bounded) and parse a whole chunk file image. */
lmp_status lmp_chunk_check_bytes(const uint8_t *z, size_t zn, lmp_diag *d);

#endif
