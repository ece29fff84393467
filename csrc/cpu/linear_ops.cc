// paddlellm_linear (and its SwiGLU form): y = x @ W for a weight packed as [ceil(N / 32), K, 32] (see linear_kernel.h, SPEC.md).
// Packed, every 32 output columns are one contiguous stream: at a few rows the op reads the weights at the
// memory's bandwidth, at more rows each weight row segment feeds up to LINEAR_ROWS rows from registers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "huge_pages.h"
#include "isa.h"
#include "linear_kernel.h"
#include "op_kernels.h"
#include "paddle/extension.h"

using namespace paddlellm_cpu;

// Rows a work item covers: bounds the x rows a weight block meets while it is in L2 (large prompts),
// and lets few-column weights still split over threads by rows.
static constexpr int64_t kRowsPerItem = 96;

// A uint8 weight is a8w8 if its rows are 4 + K (its scales, then K rows), else int4 (fewer rows).
static WeightType weight_type(const paddle::Tensor& w, int64_t K) {
  switch (w.dtype()) {
    case paddle::DataType::INT8: return WeightType::kInt8;
    case paddle::DataType::UINT8:
      return w.shape().size() == 3 && w.shape()[1] == kScaleRows + K ? WeightType::kA8W8 : WeightType::kInt4;
    case paddle::DataType::BFLOAT16: return WeightType::kBFloat16;
    default: return WeightType::kFloat32;
  }
}

// A quantized weight's group (linear_kernel.h) from its row count for K rows: int8, its K / group groups' 4 rows of
// float32 scales, then K rows of values; int4, 4 rows of float16 scales and offsets a group, then K / 2 rows of
// values. Groups are multiples of 32 but an int8 weight's one group of K (per column). 0 if no group fits.
static int64_t group_of(const paddle::Tensor& w, int64_t K) {
  const bool int8 = w.dtype() == paddle::DataType::INT8;
  const int64_t rows = w.shape()[1], scale_rows = rows - (int8 ? K : K / 2);
  if ((!int8 && K % kQuantBlock != 0) || K <= 0 || scale_rows < kScaleRows || scale_rows % kScaleRows != 0) return 0;
  const int64_t groups = scale_rows / kScaleRows;
  return K % groups == 0 && ((int8 && groups == 1) || (K / groups) % kQuantBlock == 0) ? K / groups : 0;
}

// x [M, K] -> int8 per row and block of kQuantBlock (linear_kernel.h; quantize_int8_values), each block's sum of x
// (in order) and of xq.
static void quantize_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs, float* xsum, int32_t* xqsum) {
  constexpr int64_t block = kQuantBlock;
  const int64_t blocks = K / block;
#pragma omp parallel for schedule(static) if (M * K >= (1 << 16))
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < blocks; ++b) {
      const float* in = x + m * K + b * block;
      int8_t* q = xq + m * K + b * block;
      float sum = 0.f;
      int32_t qsum = 0;
      xs[m * blocks + b] = quantize_int8_values(in, block, q);
      for (int64_t k = 0; k < block; ++k) {
        sum += in[k];
        qsum += q[k];
      }
      xsum[m * blocks + b] = sum;
      xqsum[m * blocks + b] = qsum;
    }
}

int64_t check_packed_weight(const char* op, const char* name, const paddle::Tensor& w, int64_t K, int64_t n,
                            int64_t blocks_per_output_block) {
  const auto dtype = w.dtype();
  PD_CHECK(dtype == paddle::DataType::FLOAT32 || dtype == paddle::DataType::BFLOAT16 ||
               dtype == paddle::DataType::INT8 || dtype == paddle::DataType::UINT8,
           op, ": ", name, " must be float32, bfloat16, int8 (weight-only) or uint8 (int4, a8w8)");
  const auto s = w.shape();
  PD_CHECK(s.size() == 3 && s[2] == kLinearBlock && s[0] % blocks_per_output_block == 0, op, ": ", name,
           " must be packed as [", blocks_per_output_block == 1 ? "" : "2 * ", "ceil(n / 32), rows, 32]");
  const int64_t out_blocks = s[0] / blocks_per_output_block;
  PD_CHECK(n > (out_blocks - 1) * kLinearBlock && n <= out_blocks * kLinearBlock, op, ": n = ", n,
           " does not fit a weight of ", out_blocks, " blocks of 32 columns");
  const WeightType type = weight_type(w, K);
  if (type == WeightType::kInt4) {
    PD_CHECK(group_of(w, K) > 0, op, ": ", name, " has ", s[1], " rows, which no int4 packing of K = ", K,
             " has (4 * K / group + K / 2, K and group multiples of 32)");
  } else if (type == WeightType::kInt8) {
    PD_CHECK(group_of(w, K) > 0, op, ": ", name, " has ", s[1], " rows, which no int8 packing of K = ", K,
             " has (4 * K / group + K, group K or a multiple of 32 dividing K)");
  } else if (type == WeightType::kA8W8) {
    PD_CHECK(K % kQuantBlock == 0, op, ": ", name, " is an a8w8 weight (4 + K rows), which needs K a multiple of 32, ",
             "not ", K);
  } else {
    PD_CHECK(s[1] == K, op, ": the input's last dimension is ", K, " but ", name, "'s K is ", s[1]);
  }
  return K;
}

// x [..., K] float32 times a packed weight of blocks_per_output_block * ceil(n / 32) blocks -> [..., n].
static std::vector<paddle::Tensor> run_linear(const char* op, const paddle::Tensor& x, const paddle::Tensor& weight,
                                              int64_t n, int64_t blocks_per_output_block, bool swiglu) {
  PD_CHECK(x.is_cpu() && weight.is_cpu(), op, ": x and weight must be CPU tensors");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, op, ": x must be float32");
  auto xs = x.shape();
  PD_CHECK(!xs.empty(), op, ": x must have a last dimension K");
  const int64_t K = check_packed_weight(op, "weight", weight, xs.back(), n, blocks_per_output_block);
  std::vector<int64_t> out_shape(xs.begin(), xs.end());
  out_shape.back() = n;
  auto y = paddle::empty(out_shape, paddle::DataType::FLOAT32, x.place());
  const int64_t M = K > 0 ? x.numel() / K : 0;
  linear_compute(x.data<float>(), M, K, weight, n, swiglu, y.data<float>());
  return {y};
}

void linear_compute(const float* x, int64_t M, int64_t K, const paddle::Tensor& weight, int64_t n, bool swiglu,
                    float* y) {
  if (M == 0) return;
  const WeightType type = weight_type(weight, K);
  const int64_t group = type == WeightType::kInt4 || type == WeightType::kInt8 ? group_of(weight, K) : 0;
  const int64_t blocks = swiglu ? weight.shape()[0] / 2 : weight.shape()[0];
  prefer_huge_pages(weight.data(), weight.shape()[0] * packed_block_bytes(type, K, group));
  LinearParams p{x, weight.data(), type, y, M, K, n, group, nullptr, nullptr, nullptr, nullptr};
  thread_local std::vector<int8_t> xq;  // kept between calls: decode steps allocate nothing
  thread_local std::vector<float> xs, xsum;
  thread_local std::vector<int32_t> xqsum;
  const bool int_dot = type == WeightType::kInt4 || type == WeightType::kA8W8;
  if (int_dot) {
    xq.resize(M * K);
    xs.resize(M * (K / kQuantBlock));
    xsum.resize(xs.size());
    xqsum.resize(xs.size());
    quantize_rows(x, M, K, xq.data(), xs.data(), xsum.data(), xqsum.data());
    p.xq = xq.data();
    p.xs = xs.data();
    p.xsum = xsum.data();
    p.xqsum = xqsum.data();
  }
  int isa = checked_isa();
  if (int_dot && isa == kAvx512 && !has_avx512_vnni()) isa = kAvx2;  // no byte dot products
  const bool vnni = int_dot && isa == kAvx512;
  const AvxVnni avx_vnni = int_dot && isa == kAvx2 ? avx_vnni_kernels() : AvxVnni::kOff;
  LinearFn fn = swiglu ? (vnni ? linear_swiglu_block_avx512vnni : isa == kAvx512 ? linear_swiglu_block_avx512
                          : isa == kAvx2 ? linear_swiglu_block_avx2 : linear_swiglu_block_scalar)
                       : (vnni ? linear_block_avx512vnni : isa == kAvx512 ? linear_block_avx512
                          : isa == kAvx2 ? linear_block_avx2 : linear_block_scalar);
  if (avx_vnni == AvxVnni::kOn) fn = swiglu ? linear_swiglu_block_avxvnni : linear_block_avxvnni;
  if (avx_vnni == AvxVnni::kEmulated) fn = swiglu ? linear_swiglu_block_avxvnni_emulated : linear_block_avxvnni_emulated;
  const int64_t chunks = (M + kRowsPerItem - 1) / kRowsPerItem;
  // Static split of (block, row chunk) in block-major order: each thread streams a contiguous range of blocks.
#pragma omp parallel for collapse(2) schedule(static) if (blocks * chunks > 1)
  for (int64_t nb = 0; nb < blocks; ++nb)
    for (int64_t c = 0; c < chunks; ++c) fn(p, nb, c * kRowsPerItem, std::min(M, (c + 1) * kRowsPerItem));
}

std::vector<paddle::Tensor> Linear(const paddle::Tensor& x, const paddle::Tensor& weight, int64_t n) {
  return run_linear("paddlellm_linear", x, weight, n, 1, false);
}

std::vector<paddle::Tensor> LinearSwiglu(const paddle::Tensor& x, const paddle::Tensor& weight, int64_t n) {
  return run_linear("paddlellm_linear_swiglu", x, weight, n, 2, true);
}

std::vector<std::vector<int64_t>> LinearInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& weight,
                                                   int64_t n) {
  std::vector<int64_t> out(x);
  if (!out.empty()) out.back() = n;
  return {out};
}

std::vector<paddle::DataType> LinearInferDtype(const paddle::DataType& x, const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_linear)
    .Inputs({"x", "weight"})
    .Outputs({"out"})
    .Attrs({"n: int64_t"})
    .SetKernelFn(PD_KERNEL(Linear))
    .SetInferShapeFn(PD_INFER_SHAPE(LinearInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LinearInferDtype));

// silu(x @ W_gate) * (x @ W_up), the weight's gate and up blocks interleaved (ops.pack_swiglu_weight): the
// gate/up outputs never leave the cache, and the program keeps one [..., n] activation instead of three.
PD_BUILD_OP(paddlellm_linear_swiglu)
    .Inputs({"x", "weight"})
    .Outputs({"out"})
    .Attrs({"n: int64_t"})
    .SetKernelFn(PD_KERNEL(LinearSwiglu))
    .SetInferShapeFn(PD_INFER_SHAPE(LinearInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LinearInferDtype));

// paddlellm_packed_embedding: rows of W^T for a W [K, n] packed as the linear op reads it. A model whose
// embedding is tied to its lm_head keeps one packed copy and looks tokens up in it.
static float widen(float v) { return v; }
static float widen(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename WT>
static void gather_columns(const int64_t* ids, int64_t T, const WT* w, int64_t K, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    const WT* column = w + (ids[t] / kLinearBlock) * K * kLinearBlock + ids[t] % kLinearBlock;
    for (int64_t k = 0; k < K; ++k) out[t * K + k] = widen(column[k * kLinearBlock]);
  }
}

// A float weight only: its K is then the packed shape's, which the program's shapes are inferred from.
std::vector<paddle::Tensor> PackedEmbedding(const paddle::Tensor& ids, const paddle::Tensor& weight, int64_t n) {
  const char* op = "paddlellm_packed_embedding";
  PD_CHECK(ids.is_cpu() && weight.is_cpu(), op, ": ids and weight must be CPU tensors");
  PD_CHECK(ids.dtype() == paddle::DataType::INT64, op, ": ids must be int64");
  PD_CHECK(weight.dtype() == paddle::DataType::FLOAT32 || weight.dtype() == paddle::DataType::BFLOAT16, op,
           ": weight must be float32 or bfloat16");
  const int64_t K = check_packed_weight(op, "weight", weight, weight.shape().size() == 3 ? weight.shape()[1] : 0, n, 1);
  const int64_t T = ids.numel();
  const int64_t* id = ids.data<int64_t>();
  for (int64_t t = 0; t < T; ++t)
    PD_CHECK(id[t] >= 0 && id[t] < n, op, ": token id ", id[t], " is outside the vocabulary [0, ", n, ")");
  std::vector<int64_t> out_shape = ids.shape();
  out_shape.push_back(K);
  auto out = paddle::empty(out_shape, paddle::DataType::FLOAT32, ids.place());
  if (weight.dtype() == paddle::DataType::BFLOAT16) {
    gather_columns(id, T, static_cast<const uint16_t*>(weight.data()), K, out.data<float>());
  } else {
    gather_columns(id, T, weight.data<float>(), K, out.data<float>());
  }
  return {out};
}

std::vector<std::vector<int64_t>> PackedEmbeddingInferShape(const std::vector<int64_t>& ids,
                                                            const std::vector<int64_t>& weight, int64_t n) {
  std::vector<int64_t> out(ids);
  out.push_back(weight.size() == 3 ? weight[1] : -1);
  return {out};
}

std::vector<paddle::DataType> PackedEmbeddingInferDtype(const paddle::DataType& ids, const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_packed_embedding)
    .Inputs({"ids", "weight"})
    .Outputs({"out"})
    .Attrs({"n: int64_t"})
    .SetKernelFn(PD_KERNEL(PackedEmbedding))
    .SetInferShapeFn(PD_INFER_SHAPE(PackedEmbeddingInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(PackedEmbeddingInferDtype));
