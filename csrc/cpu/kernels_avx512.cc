// Kernels (block attention, linear), AVX-512F (16 floats a vector). Built without global -mavx512 flags: only the code
// after the target pragma uses these instructions, and it runs only when the CPU (and OS) enable them.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "attention_kernel.h"
#include "linear_kernel.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace paddlellm_cpu {
namespace avx512 {

#include "vec_avx512.h"

struct V : V512 {
  static constexpr int LINEAR_ROWS = 12;  // input rows a linear tile holds in registers
  static constexpr bool kIntDot = false;  // AVX-512F alone has no byte dot products: int4, a8w8 run on avx2 or vnni
  static constexpr int INT4_ROWS = 1;
  static constexpr int A8W8_ROWS = 1;
};

#include "attention_body.inc"
#include "linear_body.inc"

}  // namespace avx512

void attend_avx512(const AttnParams& p, const AttnItem& item, float* scratch) {
  avx512::attend_item(p, item, scratch);
}

void linear_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx512::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  avx512::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu

#pragma GCC pop_options
