/* Sampler cost per token on a SmolLM-sized vocabulary (49152 random
 * logits): default settings (top-k 40, top-p 0.95, min-p 0.05) and top-p
 * alone (full sort). Prints bench table rows. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/sample.h"

#include "bench/bench_util.h"

static double run(const lmp_sample_params *p, const float *l, int v, int iters)
{
    lmp_sampler *s = NULL;
    lmp_diag d = {0};
    if (lmp_sampler_create(&s, p, v, &d) != LMP_OK) {
        fprintf(stderr, "bench_sample: %s\n", d.msg);
        exit(1);
    }
    double t0 = bench_wall_s();
    long sum = 0;
    for (int i = 0; i < iters; i++) sum += lmp_sampler_sample(s, l);
    double dt = (bench_wall_s() - t0) / iters;
    lmp_sampler_close(s);
    if (sum < 0) printf("impossible\n");
    return dt * 1e6;
}

int main(void)
{
    enum { V = 49152 };
    float *l = malloc(V * sizeof *l);
    unsigned long long x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((x >> 40) % 20000) / 1000.0f - 10.0f;
    }
    lmp_sample_params p;
    lmp_sample_defaults(&p);
    printf("| sampler, defaults (top-k 40, top-p 0.95, min-p 0.05) | %.0f | us/token | vocab 49152 |\n",
           run(&p, l, V, 500));
    p.top_k = 0;
    p.min_p = 0;
    printf("| sampler, top-p 0.95 alone, flat logits (worst case) | %.0f | us/token | vocab 49152, "
           "uniform logits in [-10, 10]: the nucleus is most of the vocabulary |\n",
           run(&p, l, V, 50));
    for (int i = 0; i < V; i++) l[i] = l[i] * 0.2f + (i % 997 == 0 ? 12.0f : 0.0f);
    printf("| sampler, top-p 0.95 alone, peaked logits | %.0f | us/token | vocab 49152, 50 "
           "tokens hold most of the mass |\n",
           run(&p, l, V, 200));
    free(l);
    return 0;
}
