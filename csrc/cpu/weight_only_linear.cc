// paddlellm_weight_only_linear: x @ W for a quantized weight as the portable program stores it (int8 values
// [K, N], float32 scales and int4 offsets per group of rows; SPEC.md), the op the HIP and NPU passes put in place
// of its dequantize-then-matmul form. The CPU's own pipeline packs these weights for paddlellm_linear instead
// (faster: int8 dot products); this kernel is the CPU's form of the op-set contract, so the device pass and its
// program can be checked here.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "op_text.h"
#include "paddle/extension.h"

using paddlellm_cpu::shape_str;

namespace {

constexpr int64_t kColumns = 64;  // a work item's output columns: a group's weight rows of them stay in L1

// The scale (and offset) rows' count G for a weight [K, N]: [N] is G = 1, [G, N] with G dividing K.
int64_t scale_groups(const char* op, const char* name, const std::vector<int64_t>& s, int64_t K, int64_t N) {
  const bool flat = s.size() == 1 && s[0] == N;
  const bool grouped = s.size() == 2 && s[1] == N && s[0] >= 1 && K % s[0] == 0;
  PD_CHECK(flat || grouped, op, ": ", name, " must be [N] or [G, N] with G dividing K (K = ", K, ", N = ", N,
           "), got ", shape_str(s));
  return flat ? 1 : s[0];
}

// out[m, c0 : c0 + width] for all M rows: per group, acc = sum x * q and xsum = sum x over its rows, then
// out += acc * scale (+ xsum * offset).
void column_block(const float* x, const int8_t* q, const float* scale, const float* offset, float* out, int64_t M,
                  int64_t K, int64_t N, int64_t group, int64_t c0, int64_t width) {
  float acc[kColumns];
  for (int64_t m = 0; m < M; ++m) {
    float* o = out + m * N + c0;
    std::fill(o, o + width, 0.f);
    for (int64_t k0 = 0; k0 < K; k0 += group) {
      std::fill(acc, acc + width, 0.f);
      float xsum = 0.f;
      for (int64_t k = k0; k < k0 + group; ++k) {
        const float xv = x[m * K + k];
        const int8_t* row = q + k * N + c0;
        xsum += xv;
        for (int64_t j = 0; j < width; ++j) acc[j] += xv * static_cast<float>(row[j]);
      }
      const float* s = scale + (k0 / group) * N + c0;
      for (int64_t j = 0; j < width; ++j) o[j] += acc[j] * s[j];
      if (offset != nullptr) {
        const float* b = offset + (k0 / group) * N + c0;
        for (int64_t j = 0; j < width; ++j) o[j] += xsum * b[j];
      }
    }
  }
}

}  // namespace

std::vector<paddle::Tensor> WeightOnlyLinear(const paddle::Tensor& x, const paddle::Tensor& weight,
                                             const paddle::Tensor& scale,
                                             const paddle::optional<paddle::Tensor>& offset) {
  const char* op = "paddlellm_weight_only_linear";
  PD_CHECK(x.is_cpu() && weight.is_cpu() && scale.is_cpu() && (!offset || offset->is_cpu()), op,
           ": inputs must be CPU tensors");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 && !x.shape().empty(), op, ": x must be float32 [..., K]");
  PD_CHECK(weight.dtype() == paddle::DataType::INT8 && weight.shape().size() == 2, op,
           ": weight must be int8 [K, N], got ", shape_str(weight.shape()));
  const int64_t K = weight.shape()[0], N = weight.shape()[1];
  PD_CHECK(x.shape().back() == K, op, ": x's last dim ", x.shape().back(), " is not the weight's K ", K);
  PD_CHECK(scale.dtype() == paddle::DataType::FLOAT32, op, ": scale must be float32");
  const int64_t groups = scale_groups(op, "scale", scale.shape(), K, N);
  if (offset) {
    PD_CHECK(offset->dtype() == paddle::DataType::FLOAT32 && offset->shape() == scale.shape(), op,
             ": offset must be float32 shaped as scale ", shape_str(scale.shape()), ", got ",
             shape_str(offset->shape()));
  }
  std::vector<int64_t> out_shape = x.shape();
  out_shape.back() = N;
  auto out = paddle::empty(out_shape, paddle::DataType::FLOAT32, x.place());
  const int64_t M = K ? x.numel() / K : 0, blocks = (N + kColumns - 1) / kColumns;
  if (K == 0) std::fill(out.data<float>(), out.data<float>() + out.numel(), 0.f);
  if (M == 0 || K == 0) return {out};
  const float* offsets = offset ? offset->data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (M * K * N >= (1 << 18))
  for (int64_t b = 0; b < blocks; ++b)
    column_block(x.data<float>(), weight.data<int8_t>(), scale.data<float>(), offsets, out.data<float>(), M, K, N,
                 K / groups, b * kColumns, std::min(kColumns, N - b * kColumns));
  return {out};
}

std::vector<std::vector<int64_t>> WeightOnlyLinearInferShape(const std::vector<int64_t>& x,
                                                             const std::vector<int64_t>& weight,
                                                             const std::vector<int64_t>& scale,
                                                             const paddle::optional<std::vector<int64_t>>& offset) {
  std::vector<int64_t> out(x);
  if (!out.empty()) out.back() = weight.size() == 2 ? weight[1] : -1;
  return {out};
}

std::vector<paddle::DataType> WeightOnlyLinearInferDtype(const paddle::DataType& x, const paddle::DataType& weight,
                                                         const paddle::DataType& scale,
                                                         const paddle::optional<paddle::DataType>& offset) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_weight_only_linear)
    .Inputs({"x", "weight", "scale", paddle::Optional("offset")})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(WeightOnlyLinear))
    .SetInferShapeFn(PD_INFER_SHAPE(WeightOnlyLinearInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WeightOnlyLinearInferDtype));
