// Paddle bindings of the HIP layer ops (the kernels: rms_norm.hip, rotary_embedding.hip, swiglu.hip,
// weight_only_linear.hip). Same op names, inputs, outputs, attributes and in-place maps as csrc/cpu/model_ops.cc;
// semantics in paddlellm/ops/SPEC.md. GPU tensors; weights may also be float16 here.
#include <cstdint>
#include <vector>

#include "hip_ops.h"
#include "op_util.h"
#include "paddle/extension.h"

using namespace paddlellm_hip_binding;
namespace kernels = paddlellm_hip;

// Rows and width of x [..., H] (rank >= 1, H >= 1).
static void rows_of(const char* op, const paddle::Tensor& x, int64_t* rows, int64_t* H) {
  const auto s = x.shape();
  PD_CHECK(!s.empty() && s.back() >= 1, op, ": x must be [..., hidden] with hidden >= 1, got ", shape_str(s));
  *H = s.back();
  *rows = x.numel() / *H;
  PD_CHECK(*rows <= INT32_MAX, op, ": ", *rows, " rows is more than one launch takes (2^31 - 1)");
}

static kernels::Dtype weight_dtype(const char* op, const paddle::Tensor& weight, const paddle::Tensor& x, int64_t H) {
  check_gpu(op, "weight", weight, x);
  PD_CHECK(weight.shape().size() == 1 && weight.shape()[0] == H, op, ": weight must be [", H, "] (x's last dim), got ",
           shape_str(weight.shape()));
  const int d = storage_dtype(weight.dtype());
  PD_CHECK(d >= 0, op, ": weight must be float32, bfloat16 or float16, got ", dtype_str(weight.dtype()));
  return static_cast<kernels::Dtype>(d);
}

// ---------------------------------------------------------------- rms_norm

std::vector<paddle::Tensor> RmsNorm(const paddle::Tensor& x, const paddle::Tensor& weight, float epsilon) {
  const char* op = "paddlellm_rms_norm";
  check_f32(op, "x", x, x);
  int64_t rows, H;
  rows_of(op, x, &rows, &H);
  const kernels::Dtype wd = weight_dtype(op, weight, x, H);
  auto out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  check_launch(op, kernels::rms_norm(x.data<float>(), nullptr, weight.data(), wd, out.data<float>(), nullptr, rows, H,
                                 epsilon, stream_of(x)));
  return {out};
}

std::vector<std::vector<int64_t>> RmsNormInferShape(const std::vector<int64_t>& x, const std::vector<int64_t>& weight) {
  return {x};
}

std::vector<paddle::DataType> RmsNormInferDtype(const paddle::DataType& x, const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_rms_norm)
    .Inputs({"x", "weight"})
    .Outputs({"out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(RmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(RmsNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RmsNormInferDtype));

// ---------------------------------------------------------------- fused_add_rms_norm

std::vector<paddle::Tensor> FusedAddRmsNorm(const paddle::Tensor& x, const paddle::Tensor& residual,
                                            const paddle::Tensor& weight, float epsilon) {
  const char* op = "paddlellm_fused_add_rms_norm";
  check_f32(op, "x", x, x);
  check_f32(op, "residual", residual, x);
  int64_t rows, H;
  rows_of(op, x, &rows, &H);
  PD_CHECK(residual.shape() == x.shape(), op, ": residual must have x's shape ", shape_str(x.shape()), ", got ",
           shape_str(residual.shape()));
  const kernels::Dtype wd = weight_dtype(op, weight, x, H);
  auto out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto residual_out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  check_launch(op, kernels::rms_norm(x.data<float>(), residual.data<float>(), weight.data(), wd, out.data<float>(),
                                 residual_out.data<float>(), rows, H, epsilon, stream_of(x)));
  return {out, residual_out};
}

std::vector<std::vector<int64_t>> FusedAddRmsNormInferShape(const std::vector<int64_t>& x,
                                                            const std::vector<int64_t>& residual,
                                                            const std::vector<int64_t>& weight) {
  return {x, x};
}

std::vector<paddle::DataType> FusedAddRmsNormInferDtype(const paddle::DataType& x, const paddle::DataType& residual,
                                                        const paddle::DataType& weight) {
  return {paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_fused_add_rms_norm)
    .Inputs({"x", "residual", "weight"})
    .Outputs({"out", "residual_out"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(FusedAddRmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(FusedAddRmsNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FusedAddRmsNormInferDtype));

// ---------------------------------------------------------------- rotary_embedding (in place)

void RotaryEmbedding(paddle::Tensor& q, paddle::Tensor& k, const paddle::Tensor& positions,
                     const paddle::Tensor& inv_freq, bool interleaved) {
  const char* op = "paddlellm_rotary_embedding";
  check_f32(op, "q", q, q);
  check_f32(op, "k", k, q);
  check_f32(op, "inv_freq", inv_freq, q);
  check_gpu(op, "positions", positions, q);
  PD_CHECK(positions.dtype() == paddle::DataType::INT32, op, ": positions must be int32, got ",
           dtype_str(positions.dtype()));
  const auto qs = q.shape(), ks = k.shape();
  PD_CHECK(qs.size() == 3, op, ": q must be [tokens, num_heads, head_dim], got ", shape_str(qs));
  PD_CHECK(ks.size() == 3, op, ": k must be [tokens, num_kv_heads, head_dim], got ", shape_str(ks));
  const int64_t T = qs[0], D = qs[2];
  PD_CHECK(ks[0] == T && ks[2] == D, op, ": k ", shape_str(ks), " must match q ", shape_str(qs),
           " in tokens and head_dim");
  PD_CHECK(D % 2 == 0, op, ": head_dim must be even, got ", D);
  PD_CHECK(positions.shape().size() == 1 && positions.shape()[0] == T, op, ": positions must be [", T,
           "] (q's tokens), got ", shape_str(positions.shape()));
  PD_CHECK(inv_freq.shape().size() == 1 && inv_freq.shape()[0] == D / 2, op, ": inv_freq must be [", D / 2,
           "] (head_dim / 2), got ", shape_str(inv_freq.shape()));
  PD_CHECK(T <= INT32_MAX, op, ": ", T, " tokens is more than one launch takes (2^31 - 1)");
  if (T == 0 || D == 0) return;
  check_launch(op, kernels::rotary_embedding(q.data<float>(), k.data<float>(), positions.data<int32_t>(),
                                         inv_freq.data<float>(), T, qs[1], ks[1], D, interleaved, stream_of(q)));
}

std::vector<std::vector<int64_t>> RotaryEmbeddingInferShape(const std::vector<int64_t>& q,
                                                            const std::vector<int64_t>& k,
                                                            const std::vector<int64_t>& positions,
                                                            const std::vector<int64_t>& inv_freq) {
  return {q, k};
}

std::vector<paddle::DataType> RotaryEmbeddingInferDtype(const paddle::DataType& q, const paddle::DataType& k,
                                                        const paddle::DataType& positions,
                                                        const paddle::DataType& inv_freq) {
  return {q, k};
}

PD_BUILD_OP(paddlellm_rotary_embedding)
    .Inputs({"q", "k", "positions", "inv_freq"})
    .Outputs({"q_out", "k_out"})
    .Attrs({"interleaved: bool"})
    .SetInplaceMap({{"q", "q_out"}, {"k", "k_out"}})
    .SetKernelFn(PD_KERNEL(RotaryEmbedding))
    .SetInferShapeFn(PD_INFER_SHAPE(RotaryEmbeddingInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RotaryEmbeddingInferDtype));

// ---------------------------------------------------------------- swiglu

std::vector<paddle::Tensor> SwiGLU(const paddle::Tensor& x) {
  const char* op = "paddlellm_swiglu";
  check_f32(op, "x", x, x);
  auto s = x.shape();
  PD_CHECK(!s.empty() && s.back() % 2 == 0, op, ": x must be [..., 2 * F] (an even last dim), got ", shape_str(s));
  const int64_t F = s.back() / 2;
  const int64_t rows = F ? x.numel() / (2 * F) : 0;
  s.back() = F;
  auto out = paddle::empty(s, paddle::DataType::FLOAT32, x.place());
  check_launch(op, kernels::swiglu(x.data<float>(), out.data<float>(), rows, F, stream_of(x)));
  return {out};
}

std::vector<std::vector<int64_t>> SwiGLUInferShape(const std::vector<int64_t>& x) {
  std::vector<int64_t> out = x;
  if (!out.empty() && out.back() >= 0) out.back() /= 2;  // a dynamic (-1) last dim stays dynamic
  return {out};
}

std::vector<paddle::DataType> SwiGLUInferDtype(const paddle::DataType& x) { return {paddle::DataType::FLOAT32}; }

PD_BUILD_OP(paddlellm_swiglu)
    .Inputs({"x"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(SwiGLU))
    .SetInferShapeFn(PD_INFER_SHAPE(SwiGLUInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SwiGLUInferDtype));

// ---------------------------------------------------------------- weight_only_linear

std::vector<paddle::Tensor> WeightOnlyLinear(const paddle::Tensor& x, const paddle::Tensor& weight,
                                             const paddle::Tensor& scale,
                                             const paddle::optional<paddle::Tensor>& offset) {
  const char* op = "paddlellm_weight_only_linear";
  check_f32(op, "x", x, x);
  check_gpu(op, "weight", weight, x);
  check_f32(op, "scale", scale, x);
  const auto xs = x.shape(), ws = weight.shape(), ss = scale.shape();
  PD_CHECK(!xs.empty(), op, ": x must be [..., K], got a scalar");
  PD_CHECK(weight.dtype() == paddle::DataType::INT8, op, ": weight must be int8, got ", dtype_str(weight.dtype()));
  PD_CHECK(ws.size() == 2, op, ": weight must be 2-D [K, N], got ", shape_str(ws));
  const int64_t K = xs.back(), N = ws[1];
  PD_CHECK(ws[0] == K, op, ": weight ", shape_str(ws), " must have K = ", K, " (x's last dim) rows");
  int64_t G = 1;
  if (ss.size() == 2) G = ss[0];
  PD_CHECK((ss.size() == 1 && ss[0] == N) || (ss.size() == 2 && ss[1] == N && G >= 1 && K % G == 0), op,
           ": scale must be [N] or [G, N] with G >= 1 dividing K (N = ", N, ", K = ", K, "), got ", shape_str(ss));
  const float* off = nullptr;
  if (offset) {
    check_f32(op, "offset", *offset, x);
    PD_CHECK(offset->shape() == ss, op, ": offset must have scale's shape ", shape_str(ss), ", got ",
             shape_str(offset->shape()));
    off = offset->data<float>();
  }
  int64_t M = 1;
  for (size_t i = 0; i + 1 < xs.size(); ++i) M *= xs[i];
  std::vector<int64_t> os(xs.begin(), xs.end() - 1);
  os.push_back(N);
  auto out = paddle::empty(os, paddle::DataType::FLOAT32, x.place());
  if (M == 0 || N == 0) return {out};
  check_launch(op, kernels::weight_only_linear(x.data<float>(), weight.data<int8_t>(), scale.data<float>(), off,
                                               out.data<float>(), M, K, N, G, stream_of(x)));
  return {out};
}

std::vector<std::vector<int64_t>> WeightOnlyLinearInferShape(const std::vector<int64_t>& x,
                                                             const std::vector<int64_t>& weight,
                                                             const std::vector<int64_t>& scale,
                                                             const paddle::optional<std::vector<int64_t>>& offset) {
  std::vector<int64_t> out = x;
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
