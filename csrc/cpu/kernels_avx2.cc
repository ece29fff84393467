// Kernels (block attention, linear), AVX2 + FMA (8 floats a vector). The library is built without -mavx2: only the code
// after the target pragma uses these instructions, and it runs only when the CPU has them.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "attention_kernel.h"
#include "linear_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace paddlellm_cpu {
namespace avx2 {

struct V {
  static constexpr int LINEAR_ROWS = 2;  // input rows a linear tile holds in registers
  static constexpr int W = 8;
  using reg = __m256;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void hsum4(reg a, reg b, reg c, reg d, float* out) {  // out[i] = sum of lanes of the i-th
    reg ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    reg abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit half: a, b, c, d partial sums
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // exp(x) for the softmax (x <= 0 there): Cephes' expf polynomial, ~1 ulp; x < -87 gives ~0.
  static reg exp(reg x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
    reg fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    reg y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
  }
  static reg load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static void load_u4_pair(const uint8_t* p, reg* lo, reg* hi) {  // 8 bytes: low and high 4 bits
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    *lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
    *hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
  }
  // float16 -> float32 without F16C: the magnitude's bits moved into float32's place, times 2^112 (the exponent
  // bias difference; exact for normal, subnormal and zero values), the sign put back
  static reg load_f16(const uint16_t* p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256 magnitude = _mm256_mul_ps(
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13)),
        _mm256_castsi256_ps(_mm256_set1_epi32(0x77800000)));
    return _mm256_or_ps(magnitude, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16)));
  }
  static reg load_bf16(const uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  // int4 x int8 dot products (linear_body.inc): a lane is a column's 4 bytes
  static constexpr bool kIntDot = true;
  static constexpr int INT4_ROWS = 1;  // input rows an int4 tile holds in registers
  using ivec = __m256i;
  static ivec izero() { return _mm256_setzero_si256(); }
  static ivec broadcast4(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
  }
  static void nibbles(const uint8_t* p, ivec* lo, ivec* hi) {  // 8 columns x 8 rows of 4 bits
    const ivec b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), mask = _mm256_set1_epi8(15);
    *lo = _mm256_and_si256(b, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi32(b, 4), mask);
  }
  // acc + per lane sum of 4 products u8 x s8 (pairs summed in 16 bits first: 15 * 127 * 2 fits)
  static ivec dot(ivec acc, ivec u8, ivec s8) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
  }
  static reg to_float(ivec v) { return _mm256_cvtepi32_ps(v); }
  // a8w8: the weights back to signed (q + 128 ^ 0x80), then int8 x int8 as pmaddubsw takes it: |x| unsigned, q with
  // x's sign (pairs: 127 * 127 * 2 fits 16 bits)
  static constexpr int A8W8_ROWS = 1;
  static constexpr int32_t kWeightBias = 0;
  static ivec biased_weights(const uint8_t* p) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(-128));
  }
  static ivec dot_biased(ivec acc, ivec w, ivec x) {
    const ivec pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static ivec iset1(int32_t v) { return _mm256_set1_epi32(v); }
  static ivec isub(ivec a, ivec b) { return _mm256_sub_epi32(a, b); }
};

#include "attention_body.inc"
#include "linear_body.inc"

}  // namespace avx2

void attend_avx2(const AttnParams& p, const AttnItem& item, float* scratch) {
  avx2::attend_item(p, item, scratch);
}

void linear_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx2::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx2::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu

#pragma GCC pop_options
