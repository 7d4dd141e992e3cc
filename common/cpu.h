/* Run-time CPU feature detection: the one place that decides whether the
 * *_avx2.c paths (compiled with -mavx2 -mfma -mf16c) and the *_avx512.c
 * paths (AVX2 flags plus -mavx512f -mavx512bw -mavx512vl -mavx512vnni) may
 * run. */
#ifndef LMP_CPU_H
#define LMP_CPU_H

/* 1 when the CPU (and OS) support AVX2, FMA and F16C together. Cached;
 * thread-safe (every thread computes the same value). */
int lmp_cpu_avx2(void);

/* 1 when lmp_cpu_avx2() holds and the CPU and OS also support AVX-512
 * F, BW, VL and VNNI (the OS saves the ZMM / opmask state, XCR0 bits
 * 5-7). LMP_CPU=avx2 (or LMP_CPU=scalar) in the environment turns it off,
 * so tests and benchmarks can compare the paths on one machine. Cached. */
int lmp_cpu_avx512(void);

#endif
