/* Same input and options give byte-identical files whatever the compiler:
 * the gcc-built programs under test and a clang build (build/clang/bin,
 * made by `make test` when clang is installed) convert the same model. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

static const char *clang_bin(const char *name)
{
    static char b[4096];
    snprintf(b, sizeof b, "%s/../clang/bin/%s", LMP_BUILD_DIR, name);
    return b;
}

static void convert_both(const char *model, const char *extra_a, const char *extra_b)
{
    char *dir = t_tmpdir();
    char cmd[16384];
    char *err = NULL;
    snprintf(cmd, sizeof cmd, "%s '%s' -o '%s/gcc.lmpk' %s", t_bin("lmpack-convert"), t_data(model), dir,
             extra_a);
    ck_assert_msg(t_sh(cmd, NULL, &err) == 0, "gcc convert failed: %s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s '%s' -o '%s/clang.lmpk' %s", clang_bin("lmpack-convert"), t_data(model),
             dir, extra_b);
    ck_assert_msg(t_sh(cmd, NULL, &err) == 0, "clang convert failed: %s", err);
    free(err);
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/gcc.lmpk", dir);
    snprintf(b, sizeof b, "%s/clang.lmpk", dir);
    size_t na, nb;
    unsigned char *ba = t_slurp(a, &na), *bb = t_slurp(b, &nb);
    ck_assert_uint_eq(na, nb);
    size_t first = na;
    for (size_t i = 0; i < na; i++)
        if (ba[i] != bb[i]) {
            first = i;
            break;
        }
    ck_assert_msg(first == na, "%s %s: gcc and clang outputs differ first at byte %zu", model, extra_a, first);
    free(ba);
    free(bb);
    t_rmtree(dir);
    free(dir);
}

START_TEST(gcc_and_clang_convert_identically)
{
    ck_assert_msg(access(clang_bin("lmpack-convert"), X_OK) == 0,
                  "clang is installed but %s was not built", clang_bin("lmpack-convert"));
    const char *opts[] = {"--dtype q4", "--dtype q4 --scheme sym --group 32 --embed q8",
                          "--dtype q4 --group 128", "--dtype f16"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        convert_both("stories260k", opts[i], opts[i]);
        convert_both("tiny-smollm-bf16", opts[i], opts[i]);
    }
    /* thread count does not matter either */
    convert_both("tiny-smollm-bf16", "--dtype q4 -t 1", "--dtype q4 -t 2");
}
END_TEST

Suite *lmp_suite_determinism(void)
{
    Suite *s = suite_create("determinism");
    if (system("command -v clang >/dev/null 2>&1") != 0) {
        /* Visible, and not counted as a passing check. */
        fprintf(stderr, "determinism: clang not installed; gcc-vs-clang comparison NOT run\n");
        return s;
    }
    TCase *tc = tcase_create("compilers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gcc_and_clang_convert_identically);
    suite_add_tcase(s, tc);
    return s;
}
