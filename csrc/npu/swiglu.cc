// paddlellm_swiglu on the npu: aclnnSwiGlu along the last dim. Semantics: paddlellm/ops/SPEC.md.
//   out = silu(x[..., :F]) * x[..., F:], x float32 [..., 2F], out float32 [..., F]
// The first half is the gate, as in CANN's SwiGlu (Swish(A) * B, A the first half) and Paddle's swiglu.
// The exp and the order of the products are CANN's, not the CPU kernel's (SPEC.md's bit-level notes
// about exp_approx do not apply here).
#include "npu_common.h"

using namespace paddlellm_npu;

std::vector<paddle::Tensor> NpuSwiGLU(const paddle::Tensor& x) {
  const char* op = "paddlellm_swiglu";
  check_on_device(op, "x", x);
  check_dtype(op, "x", x, paddle::DataType::FLOAT32);
  auto s = x.shape();
  PD_CHECK(!s.empty() && s.back() % 2 == 0, op, ": x must be [..., 2 * F] (an even last dim), got ", shape_str(s));
  s.back() /= 2;
  auto out = paddle::empty(s, paddle::DataType::FLOAT32, x.place());
  if (out.numel() == 0) return {out};  // aclnn ops take no empty tensors
  const paddle::Tensor xc = contiguous(x);
  AclTensor ax(xc), ao(out);
  launch<api::aclnnSwiGlu>(x.place(), ax.get(), static_cast<int64_t>(-1), ao.get());
  return {out};
}

std::vector<std::vector<int64_t>> NpuSwiGLUInferShape(const std::vector<int64_t>& x) {
  std::vector<int64_t> out = x;
  if (!out.empty() && out.back() >= 0) out.back() /= 2;  // a dynamic (-1) last dim stays dynamic
  return {out};
}

std::vector<paddle::DataType> NpuSwiGLUInferDtype(const paddle::DataType& x) { return {paddle::DataType::FLOAT32}; }

PD_BUILD_OP(paddlellm_swiglu)
    .Inputs({"x"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(NpuSwiGLU))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuSwiGLUInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuSwiGLUInferDtype));
