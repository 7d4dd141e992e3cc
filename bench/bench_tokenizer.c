/* Tokenizer encode speed: ~8 MB of English-like text (generated
 * deterministically from a word list with an LCG: sentences, punctuation,
 * numbers, paragraphs), encoded on one core with the given tokenizer.
 * Usage: bench_tokenizer TOKENIZER_DIR [MB]
 * Prints one row of the bench table; the best of 3 passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tokenizer.h"

#include "bench/bench_util.h"

static const char *WORDS[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "that", "was", "for", "on", "are", "with",
    "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when",
    "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their", "time",
    "if", "will", "way", "about", "many", "then", "them", "write", "would", "like", "so",
    "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day",
    "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over",
    "know", "water", "than", "call", "first", "who", "may", "down", "side", "been", "now",
    "find", "river", "mountain", "government", "information", "development", "significant",
    "temperature", "understanding", "experiment", "university", "particularly", "however",
    "although", "children", "remember", "beautiful", "question", "important", "something",
    "history", "language", "computer", "through", "between", "example", "different",
    "don't", "it's", "we're", "they'll", "you've", "isn't", "quickly", "slowly", "carefully",
    "Paris", "London", "September", "Monday", "Einstein", "Shakespeare", "photosynthesis",
};

static unsigned long long lcg = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((lcg >> 33) % n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_DIR [MB]\n");
        return 2;
    }
    size_t target = (size_t)((argc > 2 ? atof(argv[2]) : 8.0) * 1e6);
    char *text = malloc(target + 256);
    size_t n = 0, nw = sizeof WORDS / sizeof *WORDS;
    int start = 1;
    while (n < target) {
        unsigned r = rnd(1000);
        const char *w = WORDS[r < 600 ? rnd(40) : rnd((unsigned)nw)]; /* Zipf-ish */
        char num[16];
        if (r >= 990) {
            snprintf(num, sizeof num, "%u", rnd(100000));
            w = num;
        }
        if (!start) text[n++] = ' ';
        size_t l = strlen(w);
        memcpy(text + n, w, l);
        if (start && text[n] >= 'a' && text[n] <= 'z') text[n] -= 32;
        n += l;
        start = 0;
        unsigned p = rnd(100);
        if (p < 6) {
            text[n++] = ',';
        } else if (p < 12) {
            text[n++] = p < 11 ? '.' : '?';
            start = 1;
            unsigned q = rnd(12);
            if (q == 0)
                memcpy(text + n, "\n\n", 2), n += 2;
            else if (q == 1)
                text[n++] = '\n';
            else
                text[n++] = ' ';
        }
    }
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    if (lmp_tok_load(&t, argv[1], &d) != LMP_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", d.msg);
        return 1;
    }
    double best = 1e30, first = 0;
    size_t ntok = 0;
    for (int pass = 0; pass < 3; pass++) {
        int *ids = NULL;
        double t0 = bench_wall_s();
        if (lmp_tok_encode(t, text, n, 0, &ids, &ntok, &d) != LMP_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", d.msg);
            return 1;
        }
        double dt = bench_wall_s() - t0;
        if (dt < best) best = dt;
        if (pass == 0) first = dt;
        free(ids);
    }
    if (getenv("BENCH_TOK_DUMP")) fwrite(text, 1, 600, stderr);
    printf("| tokenizer encode (SmolLM) | %.1f | MB/s | %.1f MB English-like text, %zu tokens, 1 "
           "core, best of 3 (first pass, cold word cache: %.1f MB/s) |\n",
           n / best / 1e6, n / 1e6, ntok, n / first / 1e6);
    lmp_tok_close(t);
    free(text);
    return 0;
}
