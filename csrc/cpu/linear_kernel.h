// Linear layer over packed weights: plain C++ shared by the ISA-specific translation units.
// No standard headers here: each kernels_<isa>.cc includes what it needs before switching the target.
#pragma once
#include <cstdint>

namespace paddlellm_cpu {

// Output columns per packed weight block. A weight [K, N] is stored as [ceil(N / 32), K, 32]: block b holds
// columns 32b .. 32b+31 row after row (zeros past N), so one block is one contiguous stream of K * 32 values.
constexpr int64_t kLinearBlock = 32;
// An int8 weight (W = q * scale, one scale per column and group of `group` rows; group K: per column) is stored as
// [ceil(N / 32), 4 * K / group + K, 32] int8: each block is its groups in order, each group its 32 columns' float32
// scales (128 bytes: 4 rows of 32) then its rows of 32 int8, so a block is one contiguous stream read front to
// back, the scales with their rows (as llama.cpp's block_q8_0 keeps its scale; a Q8_0 weight is groups of 32).
// Scales apart from their rows (all of a block's first) measured half the streaming rate at one row.
constexpr int64_t kScaleRows = 4;
// An int4 weight (W = q * scale + offset, q in [0, 15], a scale and an offset per column and group of `group`
// rows, as llama.cpp's Q4_1 per block; group and K multiples of 32; scales and offsets float16 values) is stored
// as [ceil(N / 32), 4 * K / group + K / 2, 32] uint8: each block is its K / group groups in order, each group its
// 32 float16 scales and 32 float16 offsets (128 bytes, as Q4_1's d and m) then its group / 8 octets of rows, 128
// bytes each: column c's 4 bytes (at 4c), byte j holding q[8o + j][c] in its low and q[8o + 4 + j][c] in its high
// 4 bits. So a 4-byte lane is one
// column's 8 rows, as byte dot products (vpdpbusd, pmaddubsw) take them against 4 + 4 int8 activations.
// The int4 kernels multiply int8 activations: x quantized per row and block of kQuantBlock values
// (xs = max |x| / 127, xq = round(x / xs), as llama.cpp's Q8 activations), with the block's float sum for the
// offsets.
constexpr int64_t kQuantBlock = 32;
// An a8w8 weight (W = q * scale, q in [-127, 127], one scale per column, --quant_type a8w8; K a multiple of 32)
// meets int8 activations, quantized as for int4 (per row and block of 32), in byte dot products. It is stored as
// [ceil(N / 32), 4 + K, 32] uint8: each block starts with its 32 columns' float32 scales, then its K / 4 quads of
// rows, 128 bytes each: column c's 4 bytes (at 4c) its rows 4o .. 4o + 3, each q + 128 (the unsigned operand of
// vpdpbusd; the kernels take 128 * the activations' block sum off, or flip the bytes back to signed).
constexpr int64_t kA8W8Bias = 128;

enum class WeightType { kFloat32, kBFloat16, kInt8, kInt4, kA8W8 };

// The element type an a8w8 weight's values are read as in the kernels (uint8 stands for int4 there).
enum class BiasedInt8 : uint8_t {};

struct LinearParams {
  const float* x;  // [M, K]
  const void* w;   // packed as above: float, bf16 bits, int8 or int4 with scales
  WeightType w_type;
  float* y;        // [M, N]
  int64_t M, K, N;
  int64_t group;   // int8 and int4: rows per scale (int8 per column: K)
  // int4 and a8w8: x quantized: xq [M, K] int8, xs and xsum [M, K / kQuantBlock] (each block's scale and float
  // sum), xqsum (each block's sum of xq)
  const int8_t* xq;
  const float* xs;
  const float* xsum;
  const int32_t* xqsum;
};

// Bytes of one packed block.
inline int64_t packed_block_bytes(WeightType type, int64_t K, int64_t group) {
  switch (type) {
    case WeightType::kFloat32: return K * kLinearBlock * 4;
    case WeightType::kBFloat16: return K * kLinearBlock * 2;
    case WeightType::kInt8: return (kScaleRows * (K / group) + K) * kLinearBlock;
    case WeightType::kInt4: return (kScaleRows * (K / group) + K / 2) * kLinearBlock;
    case WeightType::kA8W8: return (kScaleRows + K) * kLinearBlock;
  }
  return 0;
}

// y[m0:m1, 32 nb : 32 nb + 32] (clipped to N) from weight block nb.
using LinearFn = void (*)(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);

void linear_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_block_avx512vnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);  // int4 and a8w8 only
void linear_block_avxvnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);     // int4 and a8w8 only
void linear_block_avxvnni_emulated(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);  // its check

// The gate/up projection with SwiGLU applied: weight blocks 2 nb (gate) and 2 nb + 1 (up) give
// y[m0:m1, 32 nb : 32 nb + 32] = silu(x W_gate) * (x W_up), clipped to N.
void linear_swiglu_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avx2(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avx512(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avx512vnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);  // int4 and a8w8 only
void linear_swiglu_block_avxvnni(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);
void linear_swiglu_block_avxvnni_emulated(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1);

}  // namespace paddlellm_cpu
