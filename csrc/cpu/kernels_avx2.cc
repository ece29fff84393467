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

#include "vec_avx2.h"

struct V : V256 {
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
