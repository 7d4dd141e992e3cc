/* common/: status strings, diagnostics, atomic output files, thread pool. */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "common/status.h"
#include "tests/testutil.h"

START_TEST(status_strings_distinct)
{
    for (int a = LMP_OK; a <= LMP_ERR_INTERNAL; a++)
        for (int b = a + 1; b <= LMP_ERR_INTERNAL; b++)
            ck_assert_str_ne(lmp_status_str((lmp_status)a), lmp_status_str((lmp_status)b));
}
END_TEST

START_TEST(diag_first_failure_wins)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_fail(&d, LMP_ERR_FORMAT, "a.bin: bad %s", "magic"), LMP_ERR_FORMAT);
    ck_assert_int_eq(lmp_fail(&d, LMP_ERR_IO, "generic"), LMP_ERR_IO);
    ck_assert_int_eq(d.status, LMP_ERR_FORMAT);
    ck_assert_str_eq(d.msg, "a.bin: bad magic");
    lmp_diag_prefix(&d, "dir");
    ck_assert_str_eq(d.msg, "dir: a.bin: bad magic");
    ck_assert_int_eq(lmp_fail(NULL, LMP_ERR_IO, "x"), LMP_ERR_IO);
}
END_TEST

START_TEST(atomic_output_only_on_commit)
{
    char *dir = t_tmpdir();
    char *path = lmp_path_join(dir, "f.bin");
    lmp_out o;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_out_open(&o, path, &d), LMP_OK);
    ck_assert_int_eq(lmp_out_write(&o, "abc", 3, &d), LMP_OK);
    ck_assert_int_eq(lmp_out_pad(&o, 8, &d), LMP_OK);
    ck_assert_int_eq(lmp_out_tell(&o), 8);
    ck_assert(!lmp_exists(path));
    ck_assert_int_eq(lmp_out_commit(&o, &d), LMP_OK);
    size_t n;
    unsigned char *b = t_slurp(path, &n);
    ck_assert_uint_eq(n, 8);
    ck_assert(memcmp(b, "abc\0\0\0\0\0", 8) == 0);
    free(b);
    /* aborted output leaves nothing behind */
    char *p2 = lmp_path_join(dir, "g.bin");
    ck_assert_int_eq(lmp_out_open(&o, p2, &d), LMP_OK);
    ck_assert_int_eq(lmp_out_write(&o, "abc", 3, &d), LMP_OK);
    lmp_out_abort(&o);
    lmp_out_abort(NULL);
    ck_assert(!lmp_exists(p2));
    free(p2);
    free(path);
    t_rmtree(dir);
    free(dir);
}
END_TEST

typedef struct {
    atomic_int hits[1000];
} pool_ctx;

static void pool_task(void *ctx, int task, int tid)
{
    (void)tid;
    pool_ctx *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
}

START_TEST(pool_runs_every_task_once)
{
    for (int nt = 1; nt <= 3; nt++) {
        lmp_pool *p;
        ck_assert_int_eq(lmp_pool_create(&p, nt, NULL), LMP_OK);
        ck_assert_int_eq(lmp_pool_threads(p), nt);
        for (int rep = 0; rep < 50; rep++) {
            pool_ctx *c = calloc(1, sizeof *c);
            int n = 1 + rep * 19 % 1000;
            lmp_pool_run(p, pool_task, c, n);
            for (int i = 0; i < 1000; i++) ck_assert_int_eq(atomic_load(&c->hits[i]), i < n ? 1 : 0);
            free(c);
        }
        lmp_pool_close(p);
    }
    lmp_pool_close(NULL);
}
END_TEST

Suite *lmp_suite_common(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_strings_distinct);
    tcase_add_test(tc, diag_first_failure_wins);
    tcase_add_test(tc, atomic_output_only_on_commit);
    tcase_add_test(tc, pool_runs_every_task_once);
    suite_add_tcase(s, tc);
    return s;
}
