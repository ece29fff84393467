// The kernels of the CPU ops as C++ functions (each defined with its op), for ops built from other ops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention_kernel.h"
#include "paddle/extension.h"

// x[0:n] as int8 values, as the int4 and a8w8 kernels' activations and the int8 KV cache's rows are: scale =
// max |x| / 127, q = round(x / scale) (as x * (1 / scale), to nearest even; a zero row has scale 0); returns the
// scale. The rounding adds and takes off 1.5 * 2^23 (exact for |v| < 2^22, as the FPU's default mode rounds):
// std::nearbyint is a libm call on the baseline ISA these files are built for (SSE2 has no roundss), ~1 us a
// 576-wide row, 120 rows a SmolLM2 decode step.
inline float quantize_int8_values(const float* x, int64_t n, int8_t* q) {
  float amax = 0.f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float scale = amax / 127.f, inverse = scale > 0.f ? 1.f / scale : 0.f;
  constexpr float kMagic = 12582912.f;
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>((x[i] * inverse + kMagic) - kMagic);
  return scale;
}

// linear_ops.cc: y[M, n] = x[M, K] @ W (W packed, see linear_kernel.h); with swiglu, the gate/up form.
void linear_compute(const float* x, int64_t M, int64_t K, const paddle::Tensor& weight, int64_t n, bool swiglu,
                    float* y);
// Checks that a packed weight (float32, bfloat16, int8 or int4: linear_kernel.h) holds K rows and n columns
// (blocks_per_output_block = 2: the gate/up form); returns K.
int64_t check_packed_weight(const char* op, const char* name, const paddle::Tensor& w, int64_t K, int64_t n,
                            int64_t blocks_per_output_block);
// model_ops.cc
std::vector<paddle::Tensor> FusedAddRmsNorm(const paddle::Tensor& x, const paddle::Tensor& residual,
                                            const paddle::Tensor& weight, float epsilon);
// The same into given float32 tensors of x's shape (residual_out may be neither input).
void FusedAddRmsNormInto(const paddle::Tensor& x, const paddle::Tensor& residual, const paddle::Tensor& weight,
                         float epsilon, paddle::Tensor& out, paddle::Tensor& residual_out);
void RotaryEmbedding(paddle::Tensor& q, paddle::Tensor& k, const paddle::Tensor& positions,
                     const paddle::Tensor& inv_freq, bool interleaved);
// paged_ops.cc
namespace paddlellm_cpu {
CacheType cache_type(const paddle::Tensor& cache);  // a KV cache's element type (attention_kernel.h)
}  // namespace paddlellm_cpu
void WriteCacheKV(const paddle::Tensor& key, const paddle::Tensor& value, paddle::Tensor& key_cache,
                  paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                  const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder,
                  const paddle::optional<paddle::Tensor>& key_scale,
                  const paddle::optional<paddle::Tensor>& value_scale);
std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& key_cache,
                                           const paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                                           const paddle::Tensor& seq_lens_this_time,
                                           const paddle::Tensor& seq_lens_decoder);
// The same into a given float32 tensor of q's shape.
void BlockAttentionInto(const paddle::Tensor& q, const paddle::Tensor& key_cache, const paddle::Tensor& value_cache,
                        const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                        const paddle::Tensor& seq_lens_decoder, paddle::Tensor& out);
