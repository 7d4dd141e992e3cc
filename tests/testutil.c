#include "tests/testutil.h"
#include "quantize/q4.h"
#include "runtime/model.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char bufs[8][4096];
static int slot;

const char *t_data(const char *rel)
{
    char *b = bufs[slot++ & 7];
    snprintf(b, sizeof bufs[0], "%s/tests/data/%s", LMP_SRC_DIR, rel);
    return b;
}

const char *t_bin(const char *name)
{
    char *b = bufs[slot++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", LMP_BIN_DIR, name);
    return b;
}

char *t_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/lmpack-test-XXXXXX", base ? base : "/tmp");
    char *p = mkdtemp(tmpl);
    ck_assert_msg(p != NULL, "mkdtemp: %s", strerror(errno));
    return strdup(p);
}

void t_rmtree(const char *dir)
{
    if (!dir || strncmp(dir, "/", 1) != 0 || strstr(dir, "lmpack-test-") == NULL) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* best effort */
    }
}

static char *read_fd_all(int fd)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 1024 > cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
        ssize_t k = read(fd, b + n, cap - n - 1);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
    }
    b[n] = '\0';
    return b;
}

int t_run(char *const argv[], char **out, char **err)
{
    char ofile[] = "/tmp/lmpack-test-outXXXXXX", efile[] = "/tmp/lmpack-test-errXXXXXX";
    int ofd = mkstemp(ofile), efd = mkstemp(efile);
    ck_assert(ofd >= 0 && efd >= 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    if (out) *out = read_fd_all(ofd);
    if (err) *err = read_fd_all(efd);
    close(ofd);
    close(efd);
    unlink(ofile);
    unlink(efile);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int t_sh(const char *cmd, char **out, char **err)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    return t_run(argv, out, err);
}

void t_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert(fwrite(data, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

unsigned char *t_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    b[len] = 0;
    if (n) *n = (size_t)len;
    return b;
}

lmp_mat t_q4_default_view(const lmp_mat *src, void **buf)
{
    lmp_diag d;
    lmp_mat m;
    size_t rb = lmp_q4_row_bytes(src->cols, LMP_Q4_DEFAULT_GROUP, LMP_Q4_DEFAULT_SCHEME);
    *buf = malloc(rb * src->rows);
    ck_assert_int_eq(lmp_q4_quantize(src->data, src->rows, src->cols, LMP_Q4_DEFAULT_GROUP,
                                     LMP_Q4_DEFAULT_SCHEME, LMP_Q4_SEARCH, *buf, NULL, "w", &d),
                     LMP_OK);
    ck_assert_int_eq(lmp_q4_mat_init(&m, src->rows, src->cols, LMP_Q4_DEFAULT_GROUP,
                                     LMP_Q4_DEFAULT_SCHEME, *buf, &d),
                     LMP_OK);
    return m;
}

typedef struct {
    int n;
    void *buf[];
} q4_owner;

static void q4_owner_free(void *p)
{
    q4_owner *o = p;
    for (int i = 0; i < o->n; i++) free(o->buf[i]);
    free(o);
}

void t_q4_default_model(const lmp_model *fp, lmp_model *q)
{
    const int L = fp->cfg.n_layers;
    q4_owner *o = malloc(sizeof *o + sizeof(void *) * (size_t)(7 * L + 2));
    ck_assert_ptr_nonnull(o);
    o->n = 0;
    *q = *fp;
    q->layers = calloc((size_t)L, sizeof *q->layers);
    ck_assert_ptr_nonnull(q->layers);
    for (int l = 0; l < L; l++) {
        const lmp_layer *S = &fp->layers[l];
        lmp_layer *D = &q->layers[l];
        *D = *S;
        D->wq = t_q4_default_view(&S->wq, &o->buf[o->n++]);
        D->wk = t_q4_default_view(&S->wk, &o->buf[o->n++]);
        D->wv = t_q4_default_view(&S->wv, &o->buf[o->n++]);
        D->wo = t_q4_default_view(&S->wo, &o->buf[o->n++]);
        D->wgate = t_q4_default_view(&S->wgate, &o->buf[o->n++]);
        D->wup = t_q4_default_view(&S->wup, &o->buf[o->n++]);
        D->wdown = t_q4_default_view(&S->wdown, &o->buf[o->n++]);
    }
    q->embed = t_q4_default_view(&fp->embed, &o->buf[o->n++]);
    q->lm_head = fp->cfg.tied ? q->embed : t_q4_default_view(&fp->lm_head, &o->buf[o->n++]);
    q->release = q4_owner_free;
    q->owner = o;
    lmp_diag d = {0};
    ck_assert_msg(lmp_model_check(q, "q4", &d) == LMP_OK, "%s", d.msg);
}

