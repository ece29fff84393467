// paddlellm_rms_norm on the npu: aclnnRmsNorm. Semantics: paddlellm/ops/SPEC.md.
//   out = x * rsqrt(mean(x^2, -1) + epsilon) * weight, x float32 [..., H], weight float32 or bfloat16 [H].
// A bfloat16 weight is widened to float32 on the device first (exact), so aclnnRmsNorm sees float32
// x, gamma and y. Its reduction order is CANN's, not the CPU kernel's 8 partial sums.
#include "npu_common.h"

using namespace paddlellm_npu;

std::vector<paddle::Tensor> NpuRmsNorm(const paddle::Tensor& x, const paddle::Tensor& weight, float epsilon) {
  const char* op = "paddlellm_rms_norm";
  check_on_device(op, "x", x);
  check_dtype(op, "x", x, paddle::DataType::FLOAT32);
  auto shape = x.shape();
  PD_CHECK(!shape.empty() && shape.back() >= 1, op, ": x must be [..., hidden] with hidden >= 1, got ",
           shape_str(shape));
  const int64_t H = shape.back();
  const paddle::Tensor gamma = norm_weight_f32(op, weight, H);
  auto out = paddle::empty(shape, paddle::DataType::FLOAT32, x.place());
  if (x.numel() == 0) return {out};  // aclnn ops take no empty tensors
  const paddle::Tensor xc = contiguous(x);
  std::vector<int64_t> rstd_shape = shape;
  rstd_shape.back() = 1;
  auto rstd = paddle::empty(rstd_shape, paddle::DataType::FLOAT32, x.place());
  AclTensor ax(xc), ag(gamma), ay(out), ar(rstd);
  launch<api::aclnnRmsNorm>(x.place(), ax.get(), ag.get(), static_cast<double>(epsilon), ay.get(), ar.get());
  return {out};
}

std::vector<std::vector<int64_t>> NpuRmsNormInferShape(const std::vector<int64_t>& x,
                                                       const std::vector<int64_t>& weight) {
  return {x};
}

std::vector<paddle::DataType> NpuRmsNormInferDtype(const paddle::DataType& x, const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_rms_norm)
    .Inputs({"x", "weight"})
    .Outputs({"out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(NpuRmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuRmsNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuRmsNormInferDtype));
