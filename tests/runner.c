/* One runner for every Check suite. Suites are found from the file names
 * tests/test_<name>.c (see the Makefile); each defines lmp_suite_<name>().
 * Usage: lmpack-tests [SUITE...]   (default: all; CK_RUN_CASE also works) */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LMP_SUITE(n) Suite *lmp_suite_##n(void);
#include "suites.h"
#undef LMP_SUITE

typedef struct {
    const char *name;
    Suite *(*make)(void);
} suite_entry;

#define LMP_SUITE(n) {#n, lmp_suite_##n},
static const suite_entry all_suites[] = {
#include "suites.h"
};
#undef LMP_SUITE

int main(int argc, char **argv)
{
    SRunner *sr = NULL;
    size_t n = sizeof all_suites / sizeof all_suites[0];
    for (size_t i = 0; i < n; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], all_suites[i].name) == 0) want = 1;
        if (!want) continue;
        Suite *s = all_suites[i].make();
        if (!sr)
            sr = srunner_create(s);
        else
            srunner_add_suite(sr, s);
    }
    if (!sr) {
        fprintf(stderr, "lmpack-tests: no suite matches\n");
        return 2;
    }
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
