// CPU custom ops for the elementwise parts of a Llama layer:
//   paddlellm_rms_norm            out = x * rsqrt(mean(x*x, -1) + eps) * weight
//   paddlellm_fused_add_rms_norm  residual_out = x + residual; out = rms_norm(residual_out) * weight
//   paddlellm_rotary_embedding    RoPE on q and k, in place (rotate-half or GPT-J interleaved pairs)
//   paddlellm_swiglu              silu(x[..., :F]) * x[..., F:]
// Semantics: paddlellm/ops/SPEC.md. Plain C++ (no ISA-specific code): the loops are written so that GCC
// vectorizes them at -O3. Work is split over rows with OpenMP only when a call is large: at decode time
// these ops see a few KB, and opening a parallel region costs more than the op.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "op_text.h"
#include "paddle/extension.h"

namespace paddlellm_model_ops {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which a call stays on one thread

static inline float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

using paddlellm_cpu::dtype_str;
using paddlellm_cpu::shape_str;

static void check_f32(const char* op, const char* name, const paddle::Tensor& t) {
  PD_CHECK(t.is_cpu(), op, ": ", name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, op, ": ", name, " must be float32, got ", dtype_str(t.dtype()));
}

// The norm weight as float32: the tensor's own data, or a widened copy (bfloat16 -> float32 is exact).
static const float* weight_f32(const char* op, const paddle::Tensor& weight, int64_t H, std::vector<float>& buf) {
  PD_CHECK(weight.is_cpu(), op, ": weight must be a CPU tensor");
  PD_CHECK(weight.shape().size() == 1 && weight.shape()[0] == H, op, ": weight must be [", H, "] (x's last dim), got ",
           shape_str(weight.shape()));
  if (weight.dtype() == paddle::DataType::FLOAT32) return weight.data<float>();
  PD_CHECK(weight.dtype() == paddle::DataType::BFLOAT16, op, ": weight must be float32 or bfloat16, got ",
           dtype_str(weight.dtype()));
  buf.resize(H);
  const uint16_t* w = static_cast<const uint16_t*>(weight.data());
  for (int64_t j = 0; j < H; ++j) buf[j] = bf16_bits_to_float(w[j]);
  return buf.data();
}

// Rows and width of x [..., H] (rank >= 1, H >= 1).
static void rows_of(const char* op, const paddle::Tensor& x, int64_t* rows, int64_t* H) {
  const auto s = x.shape();
  PD_CHECK(!s.empty() && s.back() >= 1, op, ": x must be [..., hidden] with hidden >= 1, got ", shape_str(s));
  *H = s.back();
  *rows = *H ? x.numel() / *H : 0;
}

// sum(x*x) over one row in float32, with 8 independent partial sums (a fixed order GCC can vectorize;
// also a smaller rounding error than one running sum).
static inline float sum_squares(const float* x, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[j + l] * x[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += x[j] * x[j];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// out = (x * rsqrt(mean(x*x) + eps)) * w, for one row.
static inline void norm_row(const float* x, const float* w, float* out, int64_t H, float eps) {
  const float mean = sum_squares(x, H) / static_cast<float>(H);
  const float r = 1.f / std::sqrt(mean + eps);
  for (int64_t j = 0; j < H; ++j) out[j] = (x[j] * r) * w[j];
}

}  // namespace paddlellm_model_ops

using namespace paddlellm_model_ops;

// ---------------------------------------------------------------- rms_norm

std::vector<paddle::Tensor> RmsNorm(const paddle::Tensor& x, const paddle::Tensor& weight, float epsilon) {
  const char* op = "paddlellm_rms_norm";
  check_f32(op, "x", x);
  int64_t rows, H;
  rows_of(op, x, &rows, &H);
  std::vector<float> wbuf;
  const float* w = weight_f32(op, weight, H, wbuf);
  auto out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  float* o = out.data<float>();
#pragma omp parallel for if (rows * H > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) norm_row(in + r * H, w, o + r * H, H, epsilon);
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

void FusedAddRmsNormInto(const paddle::Tensor& x, const paddle::Tensor& residual, const paddle::Tensor& weight,
                         float epsilon, paddle::Tensor& out, paddle::Tensor& residual_out) {
  const char* op = "paddlellm_fused_add_rms_norm";
  check_f32(op, "x", x);
  check_f32(op, "residual", residual);
  int64_t rows, H;
  rows_of(op, x, &rows, &H);
  PD_CHECK(residual.shape() == x.shape(), op, ": residual must have x's shape ", shape_str(x.shape()), ", got ",
           shape_str(residual.shape()));
  std::vector<float> wbuf;
  const float* w = weight_f32(op, weight, H, wbuf);
  const float* a = x.data<float>();
  const float* b = residual.data<float>();
  float* o = out.data<float>();
  float* s = residual_out.data<float>();
#pragma omp parallel for if (rows * H > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * H;
    for (int64_t j = 0; j < H; ++j) sr[j] = a[r * H + j] + b[r * H + j];
    norm_row(sr, w, o + r * H, H, epsilon);
  }
}

std::vector<paddle::Tensor> FusedAddRmsNorm(const paddle::Tensor& x, const paddle::Tensor& residual,
                                            const paddle::Tensor& weight, float epsilon) {
  auto out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  auto residual_out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place());
  FusedAddRmsNormInto(x, residual, weight, epsilon, out, residual_out);
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

// Rotates the heads of one token. Rotate-half (HF/NeoX): pair (i, i + D/2); interleaved (GPT-J): (2i, 2i + 1).
// Each output is a*c - b*s or b*c + a*s with every product rounded (no FMA), as Paddle's elementwise ops do.
static inline void rotate_heads(float* x, int64_t heads, int64_t D, const float* cs, const float* sn,
                                bool interleaved) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * D;
    if (interleaved) {
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cs[i] - b * sn[i];
        v[2 * i + 1] = b * cs[i] + a * sn[i];
      }
    } else {
      float* lo = v;
      float* hi = v + half;
      for (int64_t i = 0; i < half; ++i) {
        const float a = lo[i], b = hi[i];
        lo[i] = a * cs[i] - b * sn[i];
        hi[i] = b * cs[i] + a * sn[i];
      }
    }
  }
}

void RotaryEmbedding(paddle::Tensor& q, paddle::Tensor& k, const paddle::Tensor& positions,
                     const paddle::Tensor& inv_freq, bool interleaved) {
  const char* op = "paddlellm_rotary_embedding";
  check_f32(op, "q", q);
  check_f32(op, "k", k);
  check_f32(op, "inv_freq", inv_freq);
  PD_CHECK(positions.is_cpu(), op, ": positions must be a CPU tensor");
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
  const int64_t Hq = qs[1], Hk = ks[1], half = D / 2;
  if (T == 0 || D == 0) return;
  float* qd = q.data<float>();
  float* kd = k.data<float>();
  const int32_t* pos = positions.data<int32_t>();
  const float* freq = inv_freq.data<float>();
#pragma omp parallel if (T * (Hq + Hk) * D > kParallelMin)
  {
    std::vector<float> cs(half), sn(half);
#pragma omp for
    for (int64_t t = 0; t < T; ++t) {
      const float p = static_cast<float>(pos[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = p * freq[i];  // float32, as positions * inv_freq in Paddle
        cs[i] = std::cos(angle);
        sn[i] = std::sin(angle);
      }
      rotate_heads(qd + t * Hq * D, Hq, D, cs.data(), sn.data(), interleaved);
      rotate_heads(kd + t * Hk * D, Hk, D, cs.data(), sn.data(), interleaved);
    }
  }
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

// This section is compiled without -ftrapping-math (GCC only; other compilers ignore the pragma): that lets
// GCC if-convert the clamp below and vectorize the row loop. Nothing here reads the FP exception flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

// exp(x) for float32 within 1 ulp on [-86, 86] (Cephes' expf polynomial after the usual reduction
// x = n ln2 + r, 2^n built in the exponent bits), plain arithmetic that GCC vectorizes; glibc's expf is
// a scalar call, ~2.5x slower here. |x| is clamped to 86 on its bits (an integer select: a float compare
// would let GCC split off a constant e^86 lane, whose denormal quotients are slow), so the result stays
// normal: e^86 ~ 2.2e37 for x > 86, e^-86 ~ 4.4e-38 for x < -86. NaN comes out as a number: swiglu's
// gate * up carries NaN through on its own.
static inline float exp_approx(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  uint32_t mag = bits & 0x7fffffffu;
  mag = mag > 0x42ac0000u ? 0x42ac0000u : mag;  // 0x42ac0000 = 86.0f
  bits = (bits & 0x80000000u) | mag;
  std::memcpy(&x, &bits, sizeof x);
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round(x / ln2), |n| <= 125
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;         // x - n ln2, ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  const int32_t scale_bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return y * scale;
}

// out = (gate * up) / (1 + exp(-gate)): silu(gate) * up in the order of Paddle's own swiglu kernel.
static void swiglu_row(const float* gate, const float* up, float* out, int64_t F) {
  for (int64_t j = 0; j < F; ++j) out[j] = gate[j] * up[j] / (1.f + exp_approx(-gate[j]));
}

#pragma GCC pop_options

std::vector<paddle::Tensor> SwiGLU(const paddle::Tensor& x) {
  const char* op = "paddlellm_swiglu";
  check_f32(op, "x", x);
  auto s = x.shape();
  PD_CHECK(!s.empty() && s.back() % 2 == 0, op, ": x must be [..., 2 * F] (an even last dim), got ", shape_str(s));
  const int64_t F = s.back() / 2;
  const int64_t rows = F ? x.numel() / (2 * F) : 0;
  s.back() = F;
  auto out = paddle::empty(s, paddle::DataType::FLOAT32, x.place());
  const float* in = x.data<float>();
  float* o = out.data<float>();
#pragma omp parallel for if (rows * F > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) swiglu_row(in + r * 2 * F, in + r * 2 * F + F, o + r * F, F);
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
