/* lmpack detokenize MODEL --ids "1 2 3" [--json]
 * Token ids -> text (printed exactly, no newline added). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "tokenizer/tokenizer.h"

static const char *PROG = "detokenize";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack detokenize MODEL --ids \"ID ID ...\" [--json]\n"
            "\n"
            "Print the text of the token ids (separated by spaces and/or commas), exactly:\n"
            "no newline is added. MODEL is a model folder, a bundle, a .lmpk container or a\n"
            "tokenizer.json.\n"
            "  --json   print {\"text\": ...} instead\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL, *ids_arg = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--ids")) {
            if (i + 1 >= argc) lmp_cli_usage_error(PROG, "--ids needs a value");
            ids_arg = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            lmp_cli_other_arg(PROG, a, &model, usage); /* --help, MODEL, errors */
        }
    }
    if (!model) lmp_cli_usage_error(PROG, "missing MODEL");
    if (!ids_arg) lmp_cli_usage_error(PROG, "missing --ids");
    int *ids = NULL;
    long n = lmp_parse_ids(ids_arg, &ids);
    if (n < 0) lmp_cli_usage_error(PROG, "--ids: not a list of non-negative integers");

    lmp_diag d = {0};
    lmp_tok *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    if (lmp_tok_open_model(&tok, model, &d) != LMP_OK) goto fail;
    if (lmp_tok_decode(tok, ids, (size_t)n, &text, &len, &d) != LMP_OK) goto fail;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        char *s = NULL;
        if (o && cJSON_AddStringToObject(o, "text", text)) s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) {
            lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
            goto fail;
        }
        printf("%s\n", s);
        free(s);
    } else {
        fwrite(text, 1, len, stdout);
    }
    if (fflush(stdout) != 0) {
        lmp_fail(&d, LMP_ERR_IO, "stdout: write failed");
        goto fail;
    }
    goto done;
fail:
    rc = lmp_cli_fail(PROG, &d);
done:
    free(ids);
    free(text);
    lmp_tok_close(tok);
    return rc;
}
