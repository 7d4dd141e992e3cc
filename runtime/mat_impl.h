/* Internal: kernels behind lmp_mat_mul (runtime/mat.c). Not a public API.
 * W is row-major with a row stride of ws floats. Each computes y[t*rows + r] for r in [r0, r1), every t in [0, n). */
#ifndef LMP_MAT_IMPL_H
#define LMP_MAT_IMPL_H

/* AVX2/FMA, float32 weights (runtime/mat_avx2.c). Call only when
 * __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"). */
void lmp_mat_f32_rows_avx2(const float *W, size_t ws, int rows, int cols, const float *x, int n,
                           float *y, int r0, int r1);

/* AVX2/FMA causal attention of one query vector q[hd] over np cached
 * positions K, V ([np][hd] each): out = softmax(q.K * scale) V; sc is
 * scratch for np floats (runtime/attn_avx2.c). */
void lmp_attn_head_avx2(const float *q, const float *K, const float *V, int np, int hd,
                        float scale, float *sc, float *out);

#endif
