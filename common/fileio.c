#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

lmp_status lmp_map_open(lmp_map *m, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    int fd = -1;
    m->data = NULL;
    m->size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    LMP_FAIL_IF(fd < 0, LMP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    LMP_FAIL_IF(fstat(fd, &st) != 0, LMP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    LMP_FAIL_IF(!S_ISREG(st.st_mode), LMP_ERR_IO, "%s: not a regular file", path);
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        LMP_FAIL_IF(p == MAP_FAILED, LMP_ERR_IO, "%s: cannot mmap: %s", path, strerror(errno));
        m->data = p;
        m->size = (size_t)st.st_size;
    }
out:
    if (fd >= 0) close(fd);
    return rc;
}

void lmp_map_close(lmp_map *m)
{
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void lmp_map_release(const lmp_map *m, size_t off, size_t len)
{
    if (!m || !m->data || off >= m->size) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    size_t start = (off + (size_t)pg - 1) / (size_t)pg * (size_t)pg; /* whole pages only */
    size_t end = off + len > m->size ? m->size : off + len;
    end = end / (size_t)pg * (size_t)pg;
    if (end > start) madvise((void *)(m->data + start), end - start, MADV_DONTNEED);
}

#define HUGE_PAGE ((size_t)2 << 20)

lmp_status lmp_hugemap_open(lmp_hugemap *h, size_t bytes, const char *what, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    memset(h, 0, sizeof *h);
    LMP_FAIL_IF(bytes == 0 || bytes > SIZE_MAX - HUGE_PAGE, LMP_ERR_NOMEM,
                "%s: cannot map %zu bytes of weights", what, bytes);
    void *p = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    LMP_FAIL_IF(p == MAP_FAILED, LMP_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", what,
                bytes);
    h->map = p;
    h->map_bytes = bytes + HUGE_PAGE;
    h->base = (uint8_t *)p + (HUGE_PAGE - (uintptr_t)p % HUGE_PAGE) % HUGE_PAGE;
    h->bytes = bytes;
#ifdef MADV_HUGEPAGE
    if (bytes >= HUGE_PAGE) (void)madvise(h->base, bytes, MADV_HUGEPAGE); /* a hint only */
#endif
out:
    return rc;
}

void lmp_hugemap_close(lmp_hugemap *h)
{
    if (!h || !h->map) return;
    munmap(h->map, h->map_bytes);
    memset(h, 0, sizeof *h);
}

lmp_status lmp_read_file(const char *path, size_t max_bytes, char **out,
                         size_t *out_len, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (out_len) *out_len = 0;
    LMP_FAIL_IF(!f, LMP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    LMP_FAIL_IF(fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode), LMP_ERR_IO,
                "%s: not a regular file", path);
    LMP_FAIL_IF((uint64_t)st.st_size > max_bytes, LMP_ERR_FORMAT,
                "%s: file is %lld bytes, larger than the %zu-byte limit", path,
                (long long)st.st_size, max_bytes);
    size_t n = (size_t)st.st_size;
    buf = malloc(n + 1);
    LMP_FAIL_IF(!buf, LMP_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    LMP_FAIL_IF(fread(buf, 1, n, f) != n, LMP_ERR_IO, "%s: short read", path);
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (out_len) *out_len = n;
out:
    free(buf);
    if (f) fclose(f);
    return rc;
}

lmp_status lmp_out_open(lmp_out *o, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    memset(o, 0, sizeof *o);
    size_t n = strlen(path) + 32;
    o->path = strdup(path);
    o->tmp_path = malloc(n);
    LMP_FAIL_IF(!o->path || !o->tmp_path, LMP_ERR_NOMEM, "%s: out of memory", path);
    snprintf(o->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    o->f = fopen(o->tmp_path, "wb");
    LMP_FAIL_IF(!o->f, LMP_ERR_IO, "%s: cannot create: %s", o->tmp_path, strerror(errno));
out:
    if (rc != LMP_OK) {
        free(o->path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
    }
    return rc;
}

lmp_status lmp_out_write(lmp_out *o, const void *buf, size_t n, lmp_diag *d)
{
    if (n == 0) return LMP_OK;
    if (!o->f) return lmp_fail(d, LMP_ERR_INTERNAL, "write to a closed output");
    if (fwrite(buf, 1, n, o->f) != n)
        return lmp_fail(d, LMP_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
    return LMP_OK;
}

uint64_t lmp_out_tell(const lmp_out *o)
{
    long long p = o->f ? (long long)ftello(o->f) : -1;
    return p < 0 ? 0 : (uint64_t)p;
}

lmp_status lmp_out_pad(lmp_out *o, uint64_t align, lmp_diag *d)
{
    static const uint8_t zeros[4096];
    uint64_t pos = lmp_out_tell(o);
    uint64_t pad = align ? (align - pos % align) % align : 0;
    while (pad > 0) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        lmp_status rc = lmp_out_write(o, zeros, k, d);
        if (rc != LMP_OK) return rc;
        pad -= k;
    }
    return LMP_OK;
}

lmp_status lmp_out_commit(lmp_out *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(!o->f, LMP_ERR_INTERNAL, "commit of a closed output");
    LMP_FAIL_IF(fflush(o->f) != 0 || fsync(fileno(o->f)) != 0, LMP_ERR_IO,
                "%s: flush failed: %s", o->path, strerror(errno));
    int cerr = fclose(o->f);
    o->f = NULL;
    LMP_FAIL_IF(cerr != 0, LMP_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
    LMP_FAIL_IF(rename(o->tmp_path, o->path) != 0, LMP_ERR_IO, "%s: cannot rename into place: %s",
                o->path, strerror(errno));
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
out:
    if (rc != LMP_OK) lmp_out_abort(o);
    return rc;
}

void lmp_out_abort(lmp_out *o)
{
    if (!o) return;
    if (o->f) fclose(o->f);
    if (o->tmp_path) unlink(o->tmp_path);
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
}

char *lmp_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

const char *lmp_path_base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int lmp_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lmp_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}
