/* Replays every fuzz target's saved corpus (fuzz/corpus/<name>/) through
 * the replay build of that target (build/<variant>/fuzz/replay_<name>), so
 * inputs that once crashed stay fixed. Runs under the sanitizer of the
 * variant (make asan / ubsan). */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"

START_TEST(replay_all_corpora)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz", LMP_SRC_DIR);
    DIR *dp = opendir(dir);
    ck_assert_ptr_nonnull(dp);
    struct dirent *e;
    int targets = 0;
    while ((e = readdir(dp))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        if (strncmp(n, "fuzz_", 5) != 0 || len < 8 || strcmp(n + len - 2, ".c") != 0) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 7), n + 5);
        char bin[4096], corpus[4096];
        snprintf(bin, sizeof bin, "%s/fuzz/replay_%s", LMP_BUILD_DIR, name);
        snprintf(corpus, sizeof corpus, "%s/fuzz/corpus/%s", LMP_SRC_DIR, name);
        char *argv[] = {bin, corpus, NULL};
        char *out = NULL, *err = NULL;
        int rc = t_run(argv, &out, &err);
        ck_assert_msg(rc == 0, "fuzz replay %s failed (exit %d): %s", name, rc, err);
        ck_assert_msg(strstr(out, "replayed 0 inputs") == NULL, "fuzz corpus for %s is empty", name);
        free(out);
        free(err);
        targets++;
    }
    closedir(dp);
    (void)targets;
}
END_TEST

Suite *lmp_suite_fuzz(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, replay_all_corpora);
    suite_add_tcase(s, tc);
    return s;
}
