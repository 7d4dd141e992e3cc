/* Run-time CPU feature detection: the one place that decides whether the
 * *_avx2.c paths (compiled with -mavx2 -mfma -mf16c) may run. */
#ifndef LMP_CPU_H
#define LMP_CPU_H

/* 1 when the CPU (and OS) support AVX2, FMA and F16C together. Cached;
 * thread-safe (every thread computes the same value). */
int lmp_cpu_avx2(void);

#endif
