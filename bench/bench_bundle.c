/* bench_bundle BUNDLE: facts about a bundle from its manifest, as table rows
 * for bench/60-bundle.sh: size, bits/weight, zstd ratio per chunk
 * (raw/compressed: min, median, max). */
#include <stdio.h>
#include <stdlib.h>

#include "manifest/manifest.h"

#include "bench/bench_util.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_bundle BUNDLE_DIR\n");
        return 2;
    }
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_manifest *m = NULL;
    if (lmp_manifest_load(&m, argv[1], &d) != LMP_OK) {
        fprintf(stderr, "bench_bundle: %s\n", d.msg);
        return 1;
    }
    double *r = calloc(m->n_chunks, sizeof *r);
    uint64_t tensor_bytes = 0, chunk_bytes = 0;
    for (size_t i = 0; i < m->n_chunks; i++) {
        r[i] = (double)m->chunks[i].raw_size / (double)m->chunks[i].compressed_size;
        chunk_bytes += m->chunks[i].compressed_size;
        for (size_t k = 0; k < m->chunks[i].n_tensors; k++)
            tensor_bytes += m->chunks[i].tensors[k].size;
    }
    qsort(r, m->n_chunks, sizeof *r, bench_cmp_double);
    size_t n = m->n_chunks;
    double med = n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
    printf("| bundle smollm-360m: size | %.1f | MB | %zu chunks + %zu tokenizer files |\n",
           (double)m->bundle_bytes / 1e6, m->n_chunks, m->n_tokenizer);
    printf("| bundle smollm-360m: bits/weight (tensors) | %.3f | bits | all tensors, embed incl. |\n",
           8.0 * (double)tensor_bytes / (double)m->n_weights);
    printf("| bundle smollm-360m: bits/weight (on disk) | %.3f | bits | compressed chunks |\n",
           8.0 * (double)chunk_bytes / (double)m->n_weights);
    printf("| bundle smollm-360m: zstd ratio per chunk | %.3f / %.3f / %.3f | min/median/max | "
           "raw/compressed |\n",
           r[0], med, r[n - 1]);
    free(r);
    lmp_manifest_free(m);
    return 0;
}
