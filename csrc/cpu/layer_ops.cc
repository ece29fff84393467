// paddlellm_fused_decoder_layer: one Llama decoder layer over a packed batch as one op (CPU), composed of the
// op set's kernels: residual add + RMSNorm, QKV projection, rotary, the paged-cache write, block attention,
// output projection, residual add + RMSNorm, gate/up + SwiGLU, down projection. The residual stream is
// h + delta (delta: the previous layer's output, not yet added); the op updates h and delta in place, and the
// caches. Its intermediates live only during the call: the program keeps no activations of its own for them.
// paddlellm_final_logits: the step's end, each sequence's last row through the final norm and the lm_head.
#include <cstring>
#include <vector>

#include "linear_kernel.h"
#include "op_kernels.h"
#include "paddle/extension.h"

using paddlellm_cpu::kLinearBlock;

// A tensor of the layer's intermediates kept from call to call (per thread and slot; reallocated when the
// batch's shape changes, so decode steps reuse them): allocating and freeing nine tensors every layer of every
// step took ~7% of a SmolLM2 int4 decode step (measured, same process A/B). Never freed, so no destructor runs
// after Paddle's allocator at exit.
static paddle::Tensor& reused(size_t slot, const std::vector<int64_t>& shape, const paddle::Place& place) {
  thread_local auto* pool = new std::vector<paddle::Tensor>(9);
  paddle::Tensor& t = (*pool)[slot];
  if (!t.initialized() || t.shape() != shape) t = paddle::empty(shape, paddle::DataType::FLOAT32, place);
  return t;
}

void FusedDecoderLayer(paddle::Tensor& h, paddle::Tensor& delta, const paddle::Tensor& positions,
                       const paddle::Tensor& inv_freq, paddle::Tensor& key_cache, paddle::Tensor& value_cache,
                       const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                       const paddle::Tensor& seq_lens_decoder, const paddle::Tensor& input_norm,
                       const paddle::Tensor& qkv_proj, const paddle::Tensor& o_proj,
                       const paddle::Tensor& post_attention_norm, const paddle::Tensor& gate_up_proj,
                       const paddle::Tensor& down_proj, const paddle::optional<paddle::Tensor>& key_scale,
                       const paddle::optional<paddle::Tensor>& value_scale, float epsilon, int64_t num_heads,
                       int64_t intermediate_size) {
  const char* op = "paddlellm_fused_decoder_layer";
  const auto hs = h.shape(), cs = key_cache.shape();
  PD_CHECK(hs.size() == 2 && delta.shape() == hs, op, ": h and delta must both be [tokens, hidden]");
  PD_CHECK(h.dtype() == paddle::DataType::FLOAT32 && delta.dtype() == paddle::DataType::FLOAT32, op,
           ": h and delta must be float32");
  PD_CHECK(cs.size() == 4, op, ": key_cache must be [num_blocks, num_kv_heads, block_size, head_dim]");
  const int64_t T = hs[0], H = hs[1], kv_heads = cs[1];
  const int64_t D = paddlellm_cpu::cache_head_dim(cs[3], paddlellm_cpu::cache_type(key_cache));
  PD_CHECK(num_heads > 0 && num_heads % kv_heads == 0, op, ": num_heads ", num_heads,
           " is not a multiple of the cache's ", kv_heads, " kv heads");
  const int64_t qkv_n = (num_heads + 2 * kv_heads) * D;
  check_packed_weight(op, "qkv_proj", qkv_proj, H, qkv_n, 1);
  check_packed_weight(op, "o_proj", o_proj, num_heads * D, H, 1);
  check_packed_weight(op, "gate_up_proj", gate_up_proj, H, intermediate_size, 2);
  check_packed_weight(op, "down_proj", down_proj, intermediate_size, H, 1);
  if (T == 0) return;
  const auto place = h.place();
  auto& normed = reused(0, {T, H}, place);
  auto& h1 = reused(1, {T, H}, place);
  FusedAddRmsNormInto(delta, h, input_norm, epsilon, normed, h1);  // norm(h + delta), h + delta
  auto& qkv = reused(2, {T, qkv_n}, place);
  linear_compute(normed.data<float>(), T, H, qkv_proj, qkv_n, false, qkv.data<float>());
  auto& q = reused(3, {T, num_heads, D}, place);
  auto& k = reused(4, {T, kv_heads, D}, place);
  auto& v = reused(5, {T, kv_heads, D}, place);
  for (int64_t t = 0; t < T; ++t) {  // split each row [q heads | k heads | v heads]
    const float* row = qkv.data<float>() + t * qkv_n;
    std::memcpy(q.data<float>() + t * num_heads * D, row, num_heads * D * sizeof(float));
    std::memcpy(k.data<float>() + t * kv_heads * D, row + num_heads * D, kv_heads * D * sizeof(float));
    std::memcpy(v.data<float>() + t * kv_heads * D, row + (num_heads + kv_heads) * D, kv_heads * D * sizeof(float));
  }
  RotaryEmbedding(q, k, positions, inv_freq, false);
  WriteCacheKV(k, v, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder, key_scale,
               value_scale);
  auto& attn = reused(6, {T, num_heads, D}, place);
  BlockAttentionInto(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder, attn);
  auto& attn_out = reused(7, {T, H}, place);
  linear_compute(attn.data<float>(), T, num_heads * D, o_proj, H, false, attn_out.data<float>());
  FusedAddRmsNormInto(attn_out, h1, post_attention_norm, epsilon, normed, h);  // the new h: h1 + attention
  auto& hidden = reused(8, {T, intermediate_size}, place);
  linear_compute(normed.data<float>(), T, H, gate_up_proj, intermediate_size, true, hidden.data<float>());
  linear_compute(hidden.data<float>(), T, intermediate_size, down_proj, H, false, delta.data<float>());
}

std::vector<std::vector<int64_t>> FusedDecoderLayerInferShape(
    const std::vector<int64_t>& h, const std::vector<int64_t>& delta, const std::vector<int64_t>& positions,
    const std::vector<int64_t>& inv_freq, const std::vector<int64_t>& key_cache,
    const std::vector<int64_t>& value_cache, const std::vector<int64_t>& block_tables,
    const std::vector<int64_t>& seq_lens_this_time, const std::vector<int64_t>& seq_lens_decoder,
    const std::vector<int64_t>& input_norm, const std::vector<int64_t>& qkv_proj, const std::vector<int64_t>& o_proj,
    const std::vector<int64_t>& post_attention_norm, const std::vector<int64_t>& gate_up_proj,
    const std::vector<int64_t>& down_proj, const paddle::optional<std::vector<int64_t>>& key_scale,
    const paddle::optional<std::vector<int64_t>>& value_scale, float epsilon, int64_t num_heads,
    int64_t intermediate_size) {
  return {h, delta, key_cache, value_cache};
}

std::vector<paddle::DataType> FusedDecoderLayerInferDtype(
    const paddle::DataType& h, const paddle::DataType& delta, const paddle::DataType& positions,
    const paddle::DataType& inv_freq, const paddle::DataType& key_cache, const paddle::DataType& value_cache,
    const paddle::DataType& block_tables, const paddle::DataType& seq_lens_this_time,
    const paddle::DataType& seq_lens_decoder, const paddle::DataType& input_norm, const paddle::DataType& qkv_proj,
    const paddle::DataType& o_proj, const paddle::DataType& post_attention_norm, const paddle::DataType& gate_up_proj,
    const paddle::DataType& down_proj, const paddle::optional<paddle::DataType>& key_scale,
    const paddle::optional<paddle::DataType>& value_scale) {
  return {h, delta, key_cache, value_cache};
}

PD_BUILD_OP(paddlellm_fused_decoder_layer)
    .Inputs({"h", "delta", "positions", "inv_freq", "key_cache", "value_cache", "block_tables", "seq_lens_this_time",
             "seq_lens_decoder", "input_norm", "qkv_proj", "o_proj", "post_attention_norm", "gate_up_proj",
             "down_proj", paddle::Optional("key_scale"), paddle::Optional("value_scale")})
    .Outputs({"h_out", "delta_out", "key_cache_out", "value_cache_out"})
    .Attrs({"epsilon: float", "num_heads: int64_t", "intermediate_size: int64_t"})
    .SetInplaceMap({{"h", "h_out"}, {"delta", "delta_out"}, {"key_cache", "key_cache_out"},
                    {"value_cache", "value_cache_out"}})
    .SetKernelFn(PD_KERNEL(FusedDecoderLayer))
    .SetInferShapeFn(PD_INFER_SHAPE(FusedDecoderLayerInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FusedDecoderLayerInferDtype));

// paddlellm_final_logits: the step's end in one op: each sequence's last row of the residual stream h + delta,
// the final RMSNorm, the lm_head (packed). What gather, gather, fused_add_rms_norm and paddlellm_linear compute.
std::vector<paddle::Tensor> FinalLogits(const paddle::Tensor& h, const paddle::Tensor& delta,
                                        const paddle::Tensor& last_rows, const paddle::Tensor& norm_weight,
                                        const paddle::Tensor& lm_head, float epsilon, int64_t n) {
  const char* op = "paddlellm_final_logits";
  const auto hs = h.shape();
  PD_CHECK(hs.size() == 2 && delta.shape() == hs, op, ": h and delta must both be [tokens, hidden]");
  PD_CHECK(h.dtype() == paddle::DataType::FLOAT32 && delta.dtype() == paddle::DataType::FLOAT32, op,
           ": h and delta must be float32");
  PD_CHECK(last_rows.shape().size() == 1 && last_rows.dtype() == paddle::DataType::INT32, op,
           ": last_rows must be [sequences] int32");
  const int64_t T = hs[0], H = hs[1], S = last_rows.shape()[0];
  check_packed_weight(op, "lm_head", lm_head, H, n, 1);
  auto picked_h = paddle::empty({S, H}, paddle::DataType::FLOAT32, h.place());
  auto picked_delta = paddle::empty({S, H}, paddle::DataType::FLOAT32, h.place());
  const int32_t* rows = last_rows.data<int32_t>();
  for (int64_t s = 0; s < S; ++s) {
    PD_CHECK(rows[s] >= 0 && rows[s] < T, op, ": last_rows[", s, "] = ", rows[s], " is not a row of the ", T,
             " tokens");
    std::memcpy(picked_h.data<float>() + s * H, h.data<float>() + rows[s] * H, H * sizeof(float));
    std::memcpy(picked_delta.data<float>() + s * H, delta.data<float>() + rows[s] * H, H * sizeof(float));
  }
  auto logits = paddle::empty({S, n}, paddle::DataType::FLOAT32, h.place());
  if (S == 0) return {logits};
  auto normed = FusedAddRmsNorm(picked_delta, picked_h, norm_weight, epsilon);
  linear_compute(normed[0].data<float>(), S, H, lm_head, n, false, logits.data<float>());
  return {logits};
}

std::vector<std::vector<int64_t>> FinalLogitsInferShape(const std::vector<int64_t>& h,
                                                        const std::vector<int64_t>& delta,
                                                        const std::vector<int64_t>& last_rows,
                                                        const std::vector<int64_t>& norm_weight,
                                                        const std::vector<int64_t>& lm_head, float epsilon, int64_t n) {
  return {{last_rows[0], n}};
}

std::vector<paddle::DataType> FinalLogitsInferDtype(const paddle::DataType& h, const paddle::DataType& delta,
                                                    const paddle::DataType& last_rows,
                                                    const paddle::DataType& norm_weight,
                                                    const paddle::DataType& lm_head) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_final_logits)
    .Inputs({"h", "delta", "last_rows", "norm_weight", "lm_head"})
    .Outputs({"logits"})
    .Attrs({"epsilon: float", "n: int64_t"})
    .SetKernelFn(PD_KERNEL(FinalLogits))
    .SetInferShapeFn(PD_INFER_SHAPE(FinalLogitsInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FinalLogitsInferDtype));
