/* llversion: which llama.cpp / ggml a prebuilt binary folder holds.
 *
 *   usage: llversion LIBDIR
 * LIBDIR: node-llama-cpp's bins/<platform> folder (libggml-base.so,
 * libllama-common.so). Prints one JSON line with ggml_version() and
 * ggml_commit() from libggml-base.so, and llama.cpp's build info from
 * libllama-common.so (LLAMA_BUILD_NUMBER, LLAMA_COMMIT, LLAMA_COMPILER,
 * LLAMA_BUILD_TARGET: exported globals of common/build-info.cpp). Fields it
 * cannot find are printed as null: node-llama-cpp's release tag alone
 * ("v0.4.0" in 3.21.1) does not say which llama.cpp commit was built.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *open_lib(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) fprintf(stderr, "llversion: %s\n", dlerror());
    return h;
}

/* "s" as a JSON string (these are short ASCII version strings), or null. */
static void put_str(const char *key, const char *s, const char *sep)
{
    if (!s) {
        printf("\"%s\": null%s", key, sep);
        return;
    }
    printf("\"%s\": \"", key);
    for (; *s; s++)
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s >= 0x20) putchar(*s);
    printf("\"%s", sep);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: llversion LIBDIR\n");
        return 2;
    }
    /* libggml-base first: libllama-common depends on it through RUNPATH */
    void *g = open_lib(argv[1], "libggml-base.so");
    void *c = open_lib(argv[1], "libllama-common.so");
    if (!g) return 1;
    const char *(*ver)(void) = (const char *(*)(void))dlsym(g, "ggml_version");
    const char *(*com)(void) = (const char *(*)(void))dlsym(g, "ggml_commit");
    const int *bn = c ? (const int *)dlsym(c, "LLAMA_BUILD_NUMBER") : NULL;
    const char *const *lc = c ? (const char *const *)dlsym(c, "LLAMA_COMMIT") : NULL;
    const char *const *cc = c ? (const char *const *)dlsym(c, "LLAMA_COMPILER") : NULL;
    const char *const *tg = c ? (const char *const *)dlsym(c, "LLAMA_BUILD_TARGET") : NULL;
    printf("{");
    put_str("ggml_version", ver ? ver() : NULL, ", ");
    put_str("ggml_commit", com ? com() : NULL, ", ");
    if (bn) printf("\"llama_build_number\": %d, ", *bn);
    else printf("\"llama_build_number\": null, ");
    put_str("llama_commit", lc ? *lc : NULL, ", ");
    put_str("compiler", cc ? *cc : NULL, ", ");
    put_str("target", tg ? *tg : NULL, "}\n");
    return 0;
}
