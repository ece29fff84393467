// paddlellm_linear: y = x @ W for a weight packed as [ceil(N / 32), K, 32] (see linear_kernel.h, SPEC.md).
// Packed, every 32 output columns are one contiguous stream: at a few rows the op reads the weights at the
// memory's bandwidth, at more rows each weight row segment feeds up to LINEAR_ROWS rows from registers.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "isa.h"
#include "linear_kernel.h"
#include "paddle/extension.h"

using namespace paddlellm_cpu;

// Rows a work item covers: bounds the x rows a weight block meets while it is in L2 (large prompts),
// and lets few-column weights still split over threads by rows.
static constexpr int64_t kRowsPerItem = 96;

std::vector<paddle::Tensor> Linear(const paddle::Tensor& x, const paddle::Tensor& weight, int64_t n) {
  const char* op = "paddlellm_linear";
  PD_CHECK(x.is_cpu() && weight.is_cpu(), op, ": x and weight must be CPU tensors");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, op, ": x must be float32");
  PD_CHECK(weight.dtype() == paddle::DataType::FLOAT32 || weight.dtype() == paddle::DataType::BFLOAT16, op,
           ": weight must be float32 or bfloat16");
  auto ws = weight.shape();
  auto xs = x.shape();
  PD_CHECK(ws.size() == 3 && ws[2] == kLinearBlock, op, ": weight must be packed as [ceil(n / 32), K, 32]");
  PD_CHECK(!xs.empty() && xs.back() == ws[1], op, ": x's last dimension is ", xs.empty() ? 0 : xs.back(),
           " but the weight's K is ", ws[1]);
  PD_CHECK(n > (ws[0] - 1) * kLinearBlock && n <= ws[0] * kLinearBlock, op, ": n = ", n, " does not fit a weight of ",
           ws[0], " blocks of 32 columns");
  std::vector<int64_t> out_shape(xs.begin(), xs.end());
  out_shape.back() = n;
  auto y = paddle::empty(out_shape, paddle::DataType::FLOAT32, x.place());
  const int64_t K = ws[1], M = K > 0 ? x.numel() / K : 0;
  if (M == 0) return {y};

  LinearParams p{x.data<float>(), weight.data(), weight.dtype() == paddle::DataType::BFLOAT16, y.data<float>(), M, K,
                 n};
  const int isa = checked_isa();
  const LinearFn fn = isa == kAvx512 ? linear_block_avx512 : isa == kAvx2 ? linear_block_avx2 : linear_block_scalar;
  const int64_t blocks = ws[0], chunks = (M + kRowsPerItem - 1) / kRowsPerItem;
  // Static split of (block, row chunk) in block-major order: each thread streams a contiguous range of blocks.
#pragma omp parallel for collapse(2) schedule(static) if (blocks * chunks > 1)
  for (int64_t nb = 0; nb < blocks; ++nb)
    for (int64_t c = 0; c < chunks; ++c) fn(p, nb, c * kRowsPerItem, std::min(M, (c + 1) * kRowsPerItem));
  return {y};
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
