/* Browser build check: runs `make test-web` (web/test-web.mjs: the page in
 * headless Chromium against the native runtime, see docs/WEB.md).
 *
 * Runs by default: `make test-web` installs what it needs on first use
 * (Debian's emscripten and chromium, Debian's zstd / cJSON sources,
 * playwright-core from npm), so on a fresh machine `make test` checks the
 * browser build too, and a failed installation is a failed test, not a
 * silent pass. Not repeated under the sanitizer variants (it exercises the
 * wasm build and the release programs, which asan/ubsan do not change).
 * LMP_WEB_TEST=0 skips it: then no test case is registered (nothing is
 * counted as passed) and "web: SKIPPED ..." goes to stderr saying why.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_web_page)
{
    char *out = NULL, *err = NULL;
    /* A clean make: no jobserver or variant inherited from the make that
     * runs this suite. */
    const char *cmd = "cd '" LMP_SRC_DIR "' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "
                      "make --no-print-directory test-web 2>&1";
    int rc = t_sh(cmd, &out, &err);
    if (rc != 0) {
        const char *o = out ? out : "";
        size_t n = strlen(o);
        const char *tail = n > 3000 ? o + n - 3000 : o;
        ck_abort_msg("make test-web failed (exit %d):\n%s", rc, tail);
    }
    free(out);
    free(err);
}
END_TEST

Suite *lmp_suite_web(void)
{
    Suite *s = suite_create("web");
    const char *env = getenv("LMP_WEB_TEST");
    const char *why = NULL;
    if (env && !strcmp(env, "0"))
        why = "LMP_WEB_TEST=0";
    else if (strstr(LMP_BUILD_DIR, "/build/asan") || strstr(LMP_BUILD_DIR, "/build/ubsan"))
        why = "sanitizer variant (runs in `make test` only)";
    if (why) {
        fprintf(stderr, "web: SKIPPED make test-web: %s\n", why);
        return s;
    }
    TCase *tc = tcase_create("test_web");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_web_page);
    suite_add_tcase(s, tc);
    return s;
}
