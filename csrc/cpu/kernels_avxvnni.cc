// The int4 and a8w8 linear kernels with AVX-VNNI byte dot products (VEX vpdpbusd: 8 columns x 4 rows an instruction),
// for CPUs that have them without AVX-512 (Intel since Alder Lake, AMD since Zen 5). Chosen at run time at the avx2
// level where the CPU has avxvnni (isa.h: has_avx_vnni); the float kernels of that level are kernels_avx2.cc's.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "linear_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,avxvnni")

namespace paddlellm_cpu {
namespace avxvnni {

#define DPBUSD(acc, u8, s8) _mm256_dpbusd_avx_epi32(acc, u8, s8)
#include "avxvnni_traits.inc"
#undef DPBUSD

#include "linear_body.inc"

}  // namespace avxvnni

void linear_block_avxvnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avxvnni::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_avxvnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avxvnni::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu

#pragma GCC pop_options
