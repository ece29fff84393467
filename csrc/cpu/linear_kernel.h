// Linear layer over packed weights: plain C++ shared by the ISA-specific translation units.
// No standard headers here: each kernels_<isa>.cc includes what it needs before switching the target.
#pragma once
#include <cstdint>

namespace paddlellm_cpu {

// Output columns per packed weight block. A weight [K, N] is stored as [ceil(N / 32), K, 32]: block b holds
// columns 32b .. 32b+31 row after row (zeros past N), so one block is one contiguous stream of K * 32 values.
constexpr int64_t kLinearBlock = 32;
// An int8 weight (W = q * scale, one scale per column) is stored as [ceil(N / 32), 4 + K, 32] int8: each block
// starts with its 32 columns' float32 scales (128 bytes: 4 rows of 32), then its K rows of 32 int8, so a block
// is still one contiguous stream, its scales read with it (as llama.cpp's block_q8_0 keeps its scale).
constexpr int64_t kScaleRows = 4;

enum class WeightType { kFloat32, kBFloat16, kInt8 };

struct LinearParams {
  const float* x;  // [M, K]
  const void* w;   // packed as above: float, bf16 bits or int8 with scales
  WeightType w_type;
  float* y;        // [M, N]
  int64_t M, K, N;
};

// y[m0:m1, 32 nb : 32 nb + 32] (clipped to N) from weight block nb.
using LinearFn = void (*)(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);

void linear_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);

// The gate/up projection with SwiGLU applied: weight blocks 2 nb (gate) and 2 nb + 1 (up) give
// y[m0:m1, 32 nb : 32 nb + 32] = silu(x W_gate) * (x W_up), clipped to N.
void linear_swiglu_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);

}  // namespace paddlellm_cpu
