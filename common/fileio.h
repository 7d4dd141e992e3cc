/* File helpers shared by every reader and writer.
 *
 * Readers map files read-only (lmp_map); writers never write the final name
 * directly: lmp_out_open creates "<path>.tmp.<pid>", and only lmp_out_commit
 * fsyncs and renames it into place, so an interrupted run never leaves a
 * file that looks complete. lmp_out_abort (also safe after commit, and on
 * NULL) removes the temporary.
 */
#ifndef LMP_FILEIO_H
#define LMP_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

/* A read-only mapping of a whole file. data is NULL for an empty file. */
typedef struct lmp_map {
    const uint8_t *data;
    size_t size;
} lmp_map;

/* Map `path` read-only. On failure *m is zeroed and d names the file. */
lmp_status lmp_map_open(lmp_map *m, const char *path, lmp_diag *d);
/* Unmap; a zeroed map is a no-op. */
void lmp_map_close(lmp_map *m);
/* Tell the kernel the pages of [off, off+len) will not be needed again
 * (used by streaming passes to keep RSS bounded). Best effort. */
void lmp_map_release(const lmp_map *m, size_t off, size_t len);

/* A writable, zero-filled anonymous mapping of `bytes` whose start `base`
 * is 2 MiB aligned, with transparent huge pages requested (a hint): where
 * the runtime keeps weights it owns (decompressed bundle chunks, re-ordered
 * int4 codes), ~100 page faults instead of ~50,000 for a 200 MB model and
 * fewer TLB misses while streaming. Pages are zero until first touched, by
 * whichever thread writes them. */
typedef struct lmp_hugemap {
    uint8_t *base;   /* bytes usable bytes, 2 MiB aligned; NULL if unmapped */
    size_t bytes;
    void *map;       /* the mapping itself (base rounded down) */
    size_t map_bytes;
} lmp_hugemap;
/* Map; `what` names the owner in the out-of-memory message. bytes > 0. */
lmp_status lmp_hugemap_open(lmp_hugemap *h, size_t bytes, const char *what, lmp_diag *d);
/* Unmap; a zeroed (or never opened) hugemap is a no-op. */
void lmp_hugemap_close(lmp_hugemap *h);

/* Read a whole (small) file into a NUL-terminated malloc'd buffer that the
 * caller frees. Fails with LMP_ERR_FORMAT if larger than max_bytes. */
lmp_status lmp_read_file(const char *path, size_t max_bytes, char **out,
                         size_t *out_len, lmp_diag *d);

/* Atomic output file. */
typedef struct lmp_out {
    FILE *f;
    char *path;     /* final name (owned) */
    char *tmp_path; /* temporary name (owned) */
} lmp_out;

lmp_status lmp_out_open(lmp_out *o, const char *path, lmp_diag *d);
lmp_status lmp_out_write(lmp_out *o, const void *buf, size_t n, lmp_diag *d);
/* Write zero bytes until the file offset is a multiple of `align`. */
lmp_status lmp_out_pad(lmp_out *o, uint64_t align, lmp_diag *d);
uint64_t lmp_out_tell(const lmp_out *o);
/* Flush, fsync, close and rename into place. Frees o's strings. */
lmp_status lmp_out_commit(lmp_out *o, lmp_diag *d);
/* Close and unlink the temporary if still open. NULL / committed: no-op. */
void lmp_out_abort(lmp_out *o);

/* Join dir and name with one '/', into a malloc'd string (NULL on OOM). */
char *lmp_path_join(const char *dir, const char *name);
/* Last path component (pointer into p). */
const char *lmp_path_base(const char *p);
/* 1 if path is a directory, 0 otherwise. */
int lmp_is_dir(const char *path);
/* 1 if path exists (any type). */
int lmp_exists(const char *path);

#endif
