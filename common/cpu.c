#include "common/cpu.h"

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
#else
int lmp_cpu_avx2(void)
{
    return 0;
}
#endif
