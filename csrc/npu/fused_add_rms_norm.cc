// paddlellm_fused_add_rms_norm on the npu: aclnnAddRmsNorm. Semantics: paddlellm/ops/SPEC.md.
//   residual_out = x + residual; out = rms_norm(residual_out) * weight
// x, residual float32 [..., H] (the same shape); weight float32 or bfloat16 [H] (widened on the device).
// Not in place: out and residual_out are new tensors (aclnnAddRmsNorm's yOut and xOut).
#include "npu_common.h"

using namespace paddlellm_npu;

std::vector<paddle::Tensor> NpuFusedAddRmsNorm(const paddle::Tensor& x, const paddle::Tensor& residual,
                                               const paddle::Tensor& weight, float epsilon) {
  const char* op = "paddlellm_fused_add_rms_norm";
  check_on_device(op, "x", x);
  check_on_device(op, "residual", residual);
  check_dtype(op, "x", x, paddle::DataType::FLOAT32);
  check_dtype(op, "residual", residual, paddle::DataType::FLOAT32);
  const auto shape = x.shape();
  PD_CHECK(!shape.empty() && shape.back() >= 1, op, ": x must be [..., hidden] with hidden >= 1, got ",
           shape_str(shape));
  PD_CHECK(residual.shape() == shape, op, ": residual must have x's shape ", shape_str(shape), ", got ",
           shape_str(residual.shape()));
  const paddle::Tensor gamma = norm_weight_f32(op, weight, shape.back());
  auto out = paddle::empty(shape, paddle::DataType::FLOAT32, x.place());
  auto residual_out = paddle::empty(shape, paddle::DataType::FLOAT32, x.place());
  if (x.numel() == 0) return {out, residual_out};  // aclnn ops take no empty tensors
  const paddle::Tensor xc = contiguous(x), rc = contiguous(residual);
  std::vector<int64_t> rstd_shape = shape;
  rstd_shape.back() = 1;
  auto rstd = paddle::empty(rstd_shape, paddle::DataType::FLOAT32, x.place());
  AclTensor ax(xc), ar(rc), ag(gamma), ay(out), arstd(rstd), asum(residual_out);
  launch<api::aclnnAddRmsNorm>(x.place(), ax.get(), ar.get(), ag.get(), static_cast<double>(epsilon), ay.get(),
                               arstd.get(), asum.get());
  return {out, residual_out};
}

std::vector<std::vector<int64_t>> NpuFusedAddRmsNormInferShape(const std::vector<int64_t>& x,
                                                               const std::vector<int64_t>& residual,
                                                               const std::vector<int64_t>& weight) {
  return {x, x};
}

std::vector<paddle::DataType> NpuFusedAddRmsNormInferDtype(const paddle::DataType& x,
                                                           const paddle::DataType& residual,
                                                           const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_fused_add_rms_norm)
    .Inputs({"x", "residual", "weight"})
    .Outputs({"out", "residual_out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(NpuFusedAddRmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuFusedAddRmsNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuFusedAddRmsNormInferDtype));
