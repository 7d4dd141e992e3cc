/* Element types shared by the safetensors reader, the container and the
 * runtime, and exact conversions between the float ones.
 *
 * f16/bf16 -> f32 is exact. f32 -> f16/bf16 rounds to nearest, ties to even;
 * NaN stays NaN (quiet), overflow goes to +-inf as IEEE 754 requires.
 */
#ifndef LMP_DTYPE_H
#define LMP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum lmp_dtype {
    LMP_DT_F32 = 0,
    LMP_DT_F16,
    LMP_DT_BF16,
    LMP_DT_F64,
    LMP_DT_I8,
    LMP_DT_U8,
    LMP_DT_I16,
    LMP_DT_U16,
    LMP_DT_I32,
    LMP_DT_U32,
    LMP_DT_I64,
    LMP_DT_U64,
    LMP_DT_BOOL,
    LMP_DT_F8_E4M3,
    LMP_DT_F8_E5M2,
    LMP_DT_COUNT
} lmp_dtype;

/* Safetensors spelling ("F32", "BF16", ...) and back; -1 if unknown. */
const char *lmp_dtype_name(lmp_dtype t);
int lmp_dtype_from_name(const char *name);
/* Bytes per element. */
size_t lmp_dtype_size(lmp_dtype t);

float lmp_f16_to_f32(uint16_t h);
float lmp_bf16_to_f32(uint16_t b);
uint16_t lmp_f32_to_f16(float f);
uint16_t lmp_f32_to_bf16(float f);
/* dst[i] = lmp_f32_to_f16(src[i]) for n values (host order, not bytes):
 * the same bits, F16C's vcvtps2ph with round-to-nearest-even where the CPU
 * has it. */
void lmp_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);

/* Convert n little-endian elements of type t (F32, F16 or BF16) at src to
 * float. Returns 0, or -1 for another type. src need not be aligned. */
int lmp_to_f32(lmp_dtype t, const void *src, float *dst, size_t n);
/* The plain scalar version of lmp_to_f32 (the reference the F16C fast path
 * is tested against). */
int lmp_to_f32_scalar(lmp_dtype t, const void *src, float *dst, size_t n);
/* lmp_to_f32 that also reports whether every value is finite: 1 if so, 0
 * if some value is NaN or infinite (dst is filled either way), -1 for
 * another type. BF16 uses one fused AVX2 pass when available (the
 * quantizing converter's hot path: no second pass over the row). */
int lmp_to_f32_finite(lmp_dtype t, const void *src, float *dst, size_t n);

#endif
