/* bin/lmpack dispatcher and the shared CLI conventions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "tests/testutil.h"

START_TEST(dispatcher_help_and_unknown)
{
    char *out = NULL, *err = NULL;
    char *a1[] = {(char *)t_bin("lmpack"), "--help", NULL};
    ck_assert_int_eq(t_run(a1, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: lmpack"));
    free(out);
    free(err);
    char *a2[] = {(char *)t_bin("lmpack"), "no-such-cmd", NULL};
    ck_assert_int_eq(t_run(a2, &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown command 'no-such-cmd'"));
    free(out);
    free(err);
    char *a3[] = {(char *)t_bin("lmpack"), NULL};
    ck_assert_int_eq(t_run(a3, &out, &err), 2);
    free(out);
    free(err);
}
END_TEST

/* After `make install` the programs sit together in PREFIX/bin: the
 * dispatcher must find lmpack-CMD beside itself, not in the build tree. */
START_TEST(dispatcher_finds_programs_beside_itself)
{
    char *dir = t_tmpdir();
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' '%s/' && cd / && env PATH=/usr/bin:/bin '%s/lmpack' inspect --json '%s'",
             t_bin("lmpack"), t_bin("lmpack-inspect"), dir, dir, t_data("stories260k"));
    char *out = NULL, *err = NULL;
    ck_assert_msg(t_sh(cmd, &out, &err) == 0, "installed dispatcher failed: %s", err);
    ck_assert_ptr_nonnull(strstr(out, "\"n_tensors\""));
    free(out);
    free(err);
    /* a command whose program is not installed there is reported, exit 2 */
    snprintf(cmd, sizeof cmd, "env PATH=/usr/bin:/bin '%s/lmpack' convert --help", dir);
    ck_assert_int_eq(t_sh(cmd, &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown command 'convert'"));
    free(out);
    free(err);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(parse_helpers)
{
    long v;
    ck_assert_int_eq(lmp_parse_int("42", 0, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(lmp_parse_int("42x", 0, 100, &v), -1);
    ck_assert_int_eq(lmp_parse_int("101", 0, 100, &v), -1);
    ck_assert_int_eq(lmp_parse_int("", 0, 100, &v), -1);
    double f;
    ck_assert_int_eq(lmp_parse_float("0.5", 0, 1, &f), 0);
    ck_assert_int_eq(lmp_parse_float("nan", 0, 1, &f), -1);
    int *ids;
    ck_assert_int_eq(lmp_parse_ids(" 1 2,3\n", &ids), 3);
    ck_assert_int_eq(ids[0] + ids[1] + ids[2], 6);
    free(ids);
    ck_assert_int_eq(lmp_parse_ids("1 -2", &ids), -1);
    ck_assert_int_eq(lmp_parse_ids("1 2a", &ids), -1);
    ck_assert_int_eq(lmp_parse_ids("", &ids), 0);
    free(ids);
}
END_TEST

Suite *lmp_suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dispatcher_help_and_unknown);
    tcase_add_test(tc, parse_helpers);
    tcase_add_test(tc, dispatcher_finds_programs_beside_itself);
    suite_add_tcase(s, tc);
    return s;
}
