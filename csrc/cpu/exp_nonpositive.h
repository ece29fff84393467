// e^a for a <= 0 (or -inf) in double, within 3e-10 relative: the weights of top_p_sampling, shared by the CPU
// kernel (sampling_ops.cc) and the GPU one (csrc/hip/generation.hip), so both weigh a row alike. a = n ln2 + r
// (Cody-Waite, |r| <= ln2/2), e^r by its Taylor polynomial to degree 8 (error r^9 / 9! <= 2e-10), 2^n built in the
// exponent bits. Plain arithmetic that GCC vectorizes. Below -708 (e^-708 ~ 3e-308, the smallest normal range) it
// returns 0. Included where FMA contraction is off (after generation_common.h's pragmas; generation.hip's), so
// every ISA and the GPU get the same bits.
#pragma once

#include <cstdint>

#if defined(__HIPCC__) || defined(__CUDACC__)
#define PADDLELLM_HOST_DEVICE __host__ __device__
#else
#define PADDLELLM_HOST_DEVICE
#endif

namespace paddlellm_generation_ops {

PADDLELLM_HOST_DEVICE inline double exp_nonpositive(double a) {
  const double kShift = 6755399441055744.0;  // 1.5 * 2^52: t = x + kShift holds round(x) in its low bits
  const double c = a < -708.0 ? -708.0 : a;
  const double t = c * 1.4426950408889634 + kShift;
  const double n = t - kShift;  // round(c / ln2), in [-1022, 0]
  const double r = (c - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 40320.0;  // 1/8!
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t tb;
  __builtin_memcpy(&tb, &t, sizeof tb);
  const int64_t scale_bits = (tb - int64_t{0x4338000000000000} + 1023) << 52;  // (n + 1023) << 52
  double scale;
  __builtin_memcpy(&scale, &scale_bits, sizeof scale);
  return a < -708.0 ? 0.0 : p * scale;
}

}  // namespace paddlellm_generation_ops
