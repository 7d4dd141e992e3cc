/* bin/lmpack: git-style dispatcher. `lmpack CMD ARGS...` executes
 * `lmpack-CMD ARGS...` found beside this executable (so it also works after
 * `make install PREFIX=...`), falling back to PATH. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *commands[][2] = {
    {"inspect", "show and validate a model folder, safetensors file, container or bundle"},
    {"convert", "model folder -> .lmpk container (f32/f16/bf16/q4)"},
    {"quantize", "quantize a .lmpk container to int4"},
    {"split", "cut a container into verified, compressed per-layer chunks"},
    {"manifest", "write a bundle's streaming manifest.json"},
    {"build", "convert + quantize + split + manifest in one go"},
    {"verify", "check a bundle's integrity and quality (CI gate)"},
    {"run", "run a model: logits, greedy ids, or text generation"},
    {"tokenize", "text -> token ids"},
    {"detokenize", "token ids -> text"},
    {"mkmodel", "write a random Llama model folder of any shape (benchmarks)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: lmpack COMMAND [ARGS...]   (lmpack COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i][0], commands[i][1]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    const char *cmd = argv[1];
    if (cmd[0] == '-' || strchr(cmd, '/')) {
        fprintf(stderr, "lmpack: '%s' is not a command\n", cmd);
        usage(stderr);
        return 2;
    }
    char name[256];
    snprintf(name, sizeof name, "lmpack-%s", cmd);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            char path[PATH_MAX + 256];
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - self), self, name);
            if (access(path, X_OK) == 0) {
                argv[1] = path;
                execv(path, argv + 1);
                fprintf(stderr, "lmpack: cannot run %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
    }
    argv[1] = name;
    execvp(name, argv + 1);
    fprintf(stderr, "lmpack: unknown command '%s' (no %s beside lmpack or on PATH)\n", cmd, name);
    usage(stderr);
    return 2;
}
