/* Internal: AVX2/FMA versions of the small elementwise steps of the forward
 * pass (runtime/fwd_avx2.c) and of the greedy argmax (runtime/generate.c).
 * Not a public API. Call only when lmp_cpu_avx2() holds; the forward pass
 * uses them only while lmp_mat_simd_active(), so lmp_mat_set_simd(0) gives
 * the scalar references (runtime/forward.c), which define the results.
 * tests/test_fwd.c checks each against its reference. */
#ifndef LMP_FWD_IMPL_H
#define LMP_FWD_IMPL_H

/* out = x * rsqrt(mean(x^2) + eps) * w. The sum of squares is accumulated in
 * double like the reference, in 4 chains of 4 lanes (element i in chain
 * (i / 4) % 4, lane i % 4; chains and lanes combined in a fixed tree), so it
 * differs from the reference only by double rounding order (~1e-16
 * relative); the scaling is the reference's: (float)(x * scale) * w. */
void lmp_rmsnorm_avx2(float *out, const float *x, const float *w, int h, float eps);

/* g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u, with an 8-lane polynomial
 * e^x on x = -|g| <= 0 (a few ulp; libm expf in the reference); for
 * g < -87 the result is 0 (the exact value is below 1e-35 * |u|). */
void lmp_silu_mul_avx2(float *g, const float *u, int n);
/* The same bits, 16 lanes at a time (runtime/fwd_avx512.c); call only when
 * lmp_cpu_avx512() holds. */
void lmp_silu_mul_avx512(float *g, const float *u, int n);

/* First index of the maximum of v[0..n), NaNs never win (v[0] NaN gives 0):
 * exactly lmp_argmax's result. n >= 1. */
int lmp_argmax_avx2(const float *v, int n);

/* x[i] += y[i] (the same bits as the scalar loop: one IEEE add each). */
void lmp_vadd_avx2(float *x, const float *y, int n);

/* Rotate-half RoPE of one head vector: v[i], v[i + half] rotated by
 * (cs[i], sn[i]); the reference's operations lane by lane (products
 * rounded, then subtracted / added: no FMA), so the same bits. */
void lmp_rope_avx2(float *v, const float *cs, const float *sn, int half);

/* The scalar references (runtime/forward.c), exported for the tests. */
void lmp_fwd_rmsnorm_ref(float *out, const float *x, const float *w, int h, float eps);
void lmp_fwd_silu_mul_ref(float *g, const float *u, int n);
void lmp_fwd_rope_ref(float *v, const float *cs, const float *sn, int half);

#endif
