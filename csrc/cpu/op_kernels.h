// The kernels of the CPU ops as C++ functions (each defined with its op), for ops built from other ops.
#pragma once
#include <cstdint>
#include <vector>

#include "attention_kernel.h"
#include "paddle/extension.h"

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
void RotaryEmbedding(paddle::Tensor& q, paddle::Tensor& k, const paddle::Tensor& positions,
                     const paddle::Tensor& inv_freq, bool interleaved);
// paged_ops.cc
namespace paddlellm_cpu {
CacheType cache_type(const paddle::Tensor& cache);  // a KV cache's element type (attention_kernel.h)
}  // namespace paddlellm_cpu
void WriteCacheKV(const paddle::Tensor& key, const paddle::Tensor& value, paddle::Tensor& key_cache,
                  paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                  const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder);
std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& key_cache,
                                           const paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                                           const paddle::Tensor& seq_lens_this_time,
                                           const paddle::Tensor& seq_lens_decoder);
