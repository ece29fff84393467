// The generation helpers in the npu library: paddlellm_token_penalty, paddlellm_argmax, paddlellm_top_p_sampling,
// paddlellm_stop_flags, with the CPU library's host kernels (csrc/cpu/generation_ops.h, compiled into this
// library by setup.py). The predictor samples from logits it holds on the host, which these take as they are.
// Inputs on the npu are copied to the host (after the place's stream drains), and the result back to the npu:
// the same ids and logits as on the CPU, at the cost of one round trip. Semantics: paddlellm/ops/SPEC.md.
#include <tuple>

#include "../cpu/generation_ops.h"
#include "npu_common.h"

using namespace paddlellm_npu;

namespace {

// Runs a host kernel on host copies of the inputs; its outputs go back to the place of the first input.
template <class... Tensors>
std::vector<paddle::Tensor> on_host_then_back(std::vector<paddle::Tensor> (*kernel)(const Tensors&...),
                                              const Tensors&... inputs) {
  const paddle::Tensor& first = std::get<0>(std::tie(inputs...));
  std::vector<paddle::Tensor> outs = kernel(on_host(inputs)...);
  if (!first.is_cpu())
    for (auto& out : outs) out = to_device(out, first.place());
  return outs;
}

}  // namespace

std::vector<paddle::Tensor> NpuTokenPenalty(const paddle::Tensor& logits, const paddle::Tensor& pre_ids,
                                            const paddle::Tensor& penalty_scores, const paddle::Tensor& frequency_scores,
                                            const paddle::Tensor& presence_scores, const paddle::Tensor& min_len,
                                            const paddle::Tensor& cur_len, const paddle::Tensor& eos_token_id) {
  return on_host_then_back(&GenerationTokenPenalty, logits, pre_ids, penalty_scores, frequency_scores,
                           presence_scores, min_len, cur_len, eos_token_id);
}

std::vector<paddle::Tensor> NpuArgmax(const paddle::Tensor& logits) {
  return on_host_then_back(&GenerationArgmax, logits);
}

std::vector<paddle::Tensor> NpuTopPSampling(const paddle::Tensor& logits, const paddle::Tensor& temperature,
                                            const paddle::Tensor& top_k, const paddle::Tensor& top_p,
                                            const paddle::Tensor& uniform) {
  return on_host_then_back(&GenerationTopPSampling, logits, temperature, top_k, top_p, uniform);
}

std::vector<paddle::Tensor> NpuStopFlags(const paddle::Tensor& next_tokens, const paddle::Tensor& eos_token_id,
                                         const paddle::Tensor& cur_len, const paddle::Tensor& max_len,
                                         const paddle::Tensor& stop_flags) {
  return on_host_then_back(&GenerationStopFlags, next_tokens, eos_token_id, cur_len, max_len, stop_flags);
}

PADDLELLM_BUILD_GENERATION_OPS(NpuTokenPenalty, NpuArgmax, NpuTopPSampling, NpuStopFlags);
