// kernels_avxvnni.cc's kernels with vpdpbusd emulated exactly in AVX2 (each u8 x s8 product in 16 bits, 255 * 128
// fits; the four of a lane summed in 32 bits, as the instruction does without saturating), built without the
// avxvnni target: a CPU that lacks AVX-VNNI checks the AVX-VNNI kernels' code with it (PADDLELLM_EMULATE_AVXVNNI,
// --check's cpu-avxvnni-emulated). The predictor never chooses it.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "linear_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace paddlellm_cpu {
namespace avxvnni_emulated {

static inline __m256i dpbusd_emulated(__m256i acc, __m256i u8, __m256i s8) {
  const __m256i low_bytes = _mm256_set1_epi16(0x00ff);
  const __m256i u_even = _mm256_and_si256(u8, low_bytes), u_odd = _mm256_srli_epi16(u8, 8);
  const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s8, 8), 8), s_odd = _mm256_srai_epi16(s8, 8);
  const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd));
  return _mm256_add_epi32(acc, sums);
}

#define DPBUSD(acc, u8, s8) dpbusd_emulated(acc, u8, s8)
#include "avxvnni_traits.inc"
#undef DPBUSD

#include "linear_body.inc"

}  // namespace avxvnni_emulated

void linear_block_avxvnni_emulated(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avxvnni_emulated::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_avxvnni_emulated(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avxvnni_emulated::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu

#pragma GCC pop_options
