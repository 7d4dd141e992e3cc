/* bin/lmpack dispatcher and the shared CLI conventions. */
#include <check.h>
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
    suite_add_tcase(s, tc);
    return s;
}
