// The int4 and a8w8 linear kernels with AVX-512 VNNI byte dot products (vpdpbusd: 16 columns x 4 rows an instruction);
// the float kernels of this ISA level are kernels_avx512.cc's. Chosen at run time where the CPU has
// avx512f, avx512bw and avx512vnni (isa.h: has_avx512_vnni); elsewhere int4 and a8w8 run on the AVX2 kernels.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "linear_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni,avx2,fma")

namespace paddlellm_cpu {
namespace avx512vnni {

#include "vec_avx512.h"

struct V : V512 {
  static constexpr int LINEAR_ROWS = 12;
  // int4 x int8 dot products (linear_body.inc): a lane is a column's 4 bytes
  static constexpr bool kIntDot = true;
  static constexpr int INT4_ROWS = 4;  // input rows an int4 tile holds in registers
  using ivec = __m512i;
  static ivec izero() { return _mm512_setzero_si512(); }
  static ivec broadcast4(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
  }
  static void nibbles(const uint8_t* p, ivec* lo, ivec* hi) {  // 16 columns x 8 rows of 4 bits
    const ivec b = _mm512_loadu_si512(p), mask = _mm512_set1_epi8(15);
    *lo = _mm512_and_si512(b, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi32(b, 4), mask);
  }
  static ivec dot(ivec acc, ivec u8, ivec s8) { return _mm512_dpbusd_epi32(acc, u8, s8); }
  static reg to_float(ivec v) { return _mm512_cvtepi32_ps(v); }
  // a8w8: the weights' q + 128 as vpdpbusd's unsigned operand; the sums then hold 128 * the activations' sum more
  static constexpr int A8W8_ROWS = 4;
  static constexpr int32_t kWeightBias = 128;
  static ivec biased_weights(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static ivec dot_biased(ivec acc, ivec w, ivec x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static ivec iset1(int32_t v) { return _mm512_set1_epi32(v); }
  static ivec isub(ivec a, ivec b) { return _mm512_sub_epi32(a, b); }
};

#include "linear_body.inc"

}  // namespace avx512vnni

void linear_block_avx512vnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx512vnni::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_avx512vnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx512vnni::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu

#pragma GCC pop_options
