#include "common/cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

int lmp_cpu_avx2(void)
{
    static _Atomic int cached = -1;
    if (cached < 0) {
        /* clang's __builtin_cpu_supports does not know "f16c": read CPUID.1:ECX[29]. */
        unsigned a = 0, b = 0, c = 0, dx = 0;
        int f16c = __get_cpuid(1, &a, &b, &c, &dx) && (c & (1u << 29));
        __builtin_cpu_init();
        cached = f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

/* XCR0 through xgetbv (only valid when CPUID.1:ECX.OSXSAVE[27] is set). */
static unsigned long long xcr0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

int lmp_cpu_avx512(void)
{
    static _Atomic int cached = -1;
    if (cached < 0) {
        int ok = lmp_cpu_avx2();
        const char *e = getenv("LMP_CPU");
        if (e && (!strcmp(e, "avx2") || !strcmp(e, "scalar"))) ok = 0;
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (ok) ok = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27));
        /* SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state enabled by the OS */
        if (ok) ok = (xcr0() & 0xe6) == 0xe6;
        if (ok) {
            ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
                 (b & (1u << 16)) /* AVX512F */ && (b & (1u << 30)) /* AVX512BW */ &&
                 (b & (1u << 31)) /* AVX512VL */ && (c & (1u << 11)) /* AVX512_VNNI */;
        }
        cached = ok;
    }
    return cached;
}
#else
int lmp_cpu_avx2(void)
{
    return 0;
}

int lmp_cpu_avx512(void)
{
    return 0;
}
#endif
