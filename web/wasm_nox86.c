/* x86 SIMD kernels the wasm build links against but never calls.
 *
 * The library picks its *_avx2.c kernels at run time with
 * __builtin_cpu_supports, which the wasm build defines to 0
 * (web/wasm.mk: -D'__builtin_cpu_supports(x)=0'), so these paths are dead.
 * Where the compiler cannot prove it (the check sits in a non-static
 * function, e.g. runtime/mat.c's lmp_mat_simd_active), the call survives and
 * needs a symbol: each one gets a trap here. A new kernel that shows up as
 * an undefined symbol at `make wasm` link time belongs in this list; the
 * cleaner fix is to guard the call with `#if defined(__x86_64__)` in the
 * library (see docs/WEB.md).
 */
#include <stddef.h>

#include "runtime/mat_impl.h"

void lmp_mat_f32_rows_avx2(const float *W, size_t ws, int rows, int cols, const float *x, int n,
                           float *y, int r0, int r1)
{
    (void)W, (void)ws, (void)rows, (void)cols, (void)x, (void)n, (void)y, (void)r0, (void)r1;
    __builtin_trap();
}
