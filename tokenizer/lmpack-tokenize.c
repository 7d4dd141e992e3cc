/* lmpack tokenize MODEL (--text T | --file F) [--bos] [--chat] [--json]
 * Text -> token ids with the model's tokenizer (special tokens written in
 * the text are matched; no BOS unless --bos). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "tokenizer/tokenizer.h"

static const char *PROG = "tokenize";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack tokenize MODEL (--text TEXT | --file FILE) [--bos] [--chat] [--json]\n"
            "\n"
            "Print the token ids of TEXT (or of FILE's bytes, exactly) separated by spaces.\n"
            "MODEL is a model folder, a bundle, a .lmpk container or a tokenizer.json.\n"
            "  --bos    prepend the BOS token\n"
            "  --chat   wrap the text as one user turn of the model's chat template\n"
            "  --json   print a JSON array instead\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    int bos = 0, json = 0, chat = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--text") || !strcmp(a, "--file")) {
            if (i + 1 >= argc) lmp_cli_usage_error(PROG, "%s needs a value", a);
            if (text || file) lmp_cli_usage_error(PROG, "give one of --text or --file");
            if (a[2] == 't')
                text = argv[++i];
            else
                file = argv[++i];
        } else if (!strcmp(a, "--bos")) {
            bos = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else {
            lmp_cli_other_arg(PROG, a, &model, usage); /* --help, MODEL, errors */
        }
    }
    if (!model) lmp_cli_usage_error(PROG, "missing MODEL");
    if (!text && !file) lmp_cli_usage_error(PROG, "give --text TEXT or --file FILE");

    lmp_diag d = {0};
    lmp_tok *tok = NULL;
    char *buf = NULL, *chat_text = NULL;
    int *ids = NULL;
    size_t n = 0, len = 0;
    int rc = 0;
    if (file) {
        if (lmp_read_file(file, (size_t)1 << 31, &buf, &len, &d) != LMP_OK) goto fail;
        text = buf;
    } else {
        len = strlen(text);
    }
    if (lmp_tok_open_model(&tok, model, &d) != LMP_OK) goto fail;
    if (chat) {
        if (lmp_tok_chat_format(tok, text, &chat_text, &d) != LMP_OK) goto fail;
        text = chat_text;
        len = strlen(chat_text);
    }
    if (lmp_tok_encode(tok, text, len, bos, &ids, &n, &d) != LMP_OK) goto fail;
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
    printf(json ? "]\n" : "\n");
    if (fflush(stdout) != 0) {
        lmp_fail(&d, LMP_ERR_IO, "stdout: write failed");
        goto fail;
    }
    goto done;
fail:
    rc = lmp_cli_fail(PROG, &d);
done:
    free(ids);
    free(buf);
    free(chat_text);
    lmp_tok_close(tok);
    return rc;
}
