/* Evaluation token sequences: the --tokens file format (one sequence per
 * line, ids separated by spaces or commas), reading and writing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "verify/quality.h"

#define SEQS_MAX_FILE (256u << 20)

void lmp_quality_seqs_free(lmp_quality_seqs *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->ids ? s->ids[i] : NULL);
    free(s->ids);
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* Append one sequence (takes ownership of ids). */
static lmp_status seqs_push(lmp_quality_seqs *s, int *ids, size_t len, size_t *cap, lmp_diag *d)
{
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        int **ni = realloc(s->ids, nc * sizeof *ni);
        if (ni) s->ids = ni;
        size_t *nl = ni ? realloc(s->len, nc * sizeof *nl) : NULL;
        if (nl) s->len = nl;
        if (!ni || !nl) {
            free(ids);
            return lmp_fail(d, LMP_ERR_NOMEM, "out of memory for %zu token sequences", nc);
        }
        *cap = nc;
    }
    s->ids[s->n] = ids;
    s->len[s->n] = len;
    s->n++;
    return LMP_OK;
}

lmp_status lmp_quality_seqs_read(const char *path, size_t max_len, lmp_quality_seqs *out,
                                 lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0, line_no = 0;
    memset(out, 0, sizeof *out);
    LMP_FORWARD(lmp_read_file(path, SEQS_MAX_FILE, &buf, &n, d));
    for (char *p = buf; p < buf + n;) {
        char *e = memchr(p, '\n', (size_t)(buf + n - p));
        if (!e) e = buf + n;
        *e = '\0';
        line_no++;
        int *ids = NULL;
        long k = lmp_parse_ids(p, &ids);
        LMP_FAIL_IF(k < 0, LMP_ERR_FORMAT,
                    "%s: line %zu: not a list of non-negative token ids separated by spaces",
                    path, line_no);
        if (k == 0) { /* blank line */
            free(ids);
        } else {
            if (k < 2 || (size_t)k > max_len) free(ids);
            LMP_FAIL_IF(k < 2, LMP_ERR_FORMAT,
                        "%s: line %zu: a sequence needs at least 2 tokens (has %ld)", path,
                        line_no, k);
            LMP_FAIL_IF((size_t)k > max_len, LMP_ERR_RANGE,
                        "%s: line %zu: %ld tokens, more than the %zu positions allowed", path,
                        line_no, k, max_len);
            LMP_FORWARD(seqs_push(out, ids, (size_t)k, &cap, d));
        }
        p = e + 1;
    }
    LMP_FAIL_IF(out->n == 0, LMP_ERR_FORMAT, "%s: no token sequence in the file", path);
out:
    free(buf);
    if (rc != LMP_OK) lmp_quality_seqs_free(out);
    return rc;
}

lmp_status lmp_quality_seqs_write(const lmp_quality_seqs *s, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_out o = {0};
    char num[16];
    LMP_FORWARD(lmp_out_open(&o, path, d));
    for (size_t i = 0; i < s->n; i++) {
        for (size_t j = 0; j < s->len[i]; j++) {
            int k = snprintf(num, sizeof num, j ? " %d" : "%d", s->ids[i][j]);
            LMP_FORWARD(lmp_out_write(&o, num, (size_t)k, d));
        }
        LMP_FORWARD(lmp_out_write(&o, "\n", 1, d));
    }
    LMP_FORWARD(lmp_out_commit(&o, d));
out:
    lmp_out_abort(&o);
    return rc;
}

lmp_status lmp_quality_seqs_split(const int *ids, size_t n, int ctx, int start,
                                  lmp_quality_seqs *out, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t cap = 0, per = (size_t)ctx - (start >= 0 ? 1 : 0);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i += per) {
        size_t take = n - i < per ? n - i : per;
        size_t len = take + (start >= 0 ? 1 : 0);
        if (len < 2) break;
        int *s = malloc(len * sizeof *s);
        LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "out of memory for a sequence of %zu tokens", len);
        size_t k = 0;
        if (start >= 0) s[k++] = start;
        memcpy(s + k, ids + i, take * sizeof *s);
        LMP_FORWARD(seqs_push(out, s, len, &cap, d));
    }
out:
    if (rc != LMP_OK) lmp_quality_seqs_free(out);
    return rc;
}
