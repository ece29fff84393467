// The generation helpers' host kernels (generation_ops.cc, sampling_ops.cc: CPU tensors) and the one definition
// of their ops: PADDLELLM_BUILD_GENERATION_OPS registers the four ops with the kernel functions it is given. The
// CPU library registers the host kernels (generation_register.cc); the device libraries, whose processes sample
// on the host too, register kernels that take host tensors to these and device tensors to their own kernels
// (csrc/hip/generation_ops.cc) or refuse them (csrc/npu/generation_ops.cc). Semantics: paddlellm/ops/SPEC.md.
#pragma once

#include <cstdint>
#include <vector>

#include "paddle/extension.h"

std::vector<paddle::Tensor> GenerationTokenPenalty(const paddle::Tensor& logits, const paddle::Tensor& pre_ids,
                                                   const paddle::Tensor& penalty_scores,
                                                   const paddle::Tensor& frequency_scores,
                                                   const paddle::Tensor& presence_scores, const paddle::Tensor& min_len,
                                                   const paddle::Tensor& cur_len, const paddle::Tensor& eos_token_id);
std::vector<paddle::Tensor> GenerationArgmax(const paddle::Tensor& logits);
std::vector<paddle::Tensor> GenerationTopPSampling(const paddle::Tensor& logits, const paddle::Tensor& temperature,
                                                   const paddle::Tensor& top_k, const paddle::Tensor& top_p,
                                                   const paddle::Tensor& uniform);
std::vector<paddle::Tensor> GenerationStopFlags(const paddle::Tensor& next_tokens, const paddle::Tensor& eos_token_id,
                                                const paddle::Tensor& cur_len, const paddle::Tensor& max_len,
                                                const paddle::Tensor& stop_flags);

// Output shapes and dtypes.
inline std::vector<std::vector<int64_t>> GenerationTokenPenaltyInferShape(
    const std::vector<int64_t>& logits, const std::vector<int64_t>& pre_ids, const std::vector<int64_t>& penalty,
    const std::vector<int64_t>& frequency, const std::vector<int64_t>& presence, const std::vector<int64_t>& min_len,
    const std::vector<int64_t>& cur_len, const std::vector<int64_t>& eos) {
  return {logits};
}

inline std::vector<paddle::DataType> GenerationTokenPenaltyInferDtype(
    const paddle::DataType& logits, const paddle::DataType& pre_ids, const paddle::DataType& penalty,
    const paddle::DataType& frequency, const paddle::DataType& presence, const paddle::DataType& min_len,
    const paddle::DataType& cur_len, const paddle::DataType& eos) {
  return {paddle::DataType::FLOAT32};
}

inline std::vector<std::vector<int64_t>> GenerationArgmaxInferShape(const std::vector<int64_t>& logits) {
  return {{logits.empty() ? -1 : logits[0]}};
}

inline std::vector<paddle::DataType> GenerationArgmaxInferDtype(const paddle::DataType& logits) {
  return {paddle::DataType::INT64};
}

inline std::vector<std::vector<int64_t>> GenerationStopFlagsInferShape(const std::vector<int64_t>& next_tokens,
                                                                const std::vector<int64_t>& eos,
                                                                const std::vector<int64_t>& cur_len,
                                                                const std::vector<int64_t>& max_len,
                                                                const std::vector<int64_t>& stop_flags) {
  return {next_tokens};
}

inline std::vector<paddle::DataType> GenerationStopFlagsInferDtype(const paddle::DataType& next_tokens,
                                                            const paddle::DataType& eos,
                                                            const paddle::DataType& cur_len,
                                                            const paddle::DataType& max_len,
                                                            const paddle::DataType& stop_flags) {
  return {paddle::DataType::BOOL};
}

inline std::vector<std::vector<int64_t>> GenerationTopPSamplingInferShape(const std::vector<int64_t>& logits,
                                                                   const std::vector<int64_t>& temperature,
                                                                   const std::vector<int64_t>& top_k,
                                                                   const std::vector<int64_t>& top_p,
                                                                   const std::vector<int64_t>& uniform) {
  return {{logits.empty() ? -1 : logits[0]}};
}

inline std::vector<paddle::DataType> GenerationTopPSamplingInferDtype(const paddle::DataType& logits,
                                                               const paddle::DataType& temperature,
                                                               const paddle::DataType& top_k,
                                                               const paddle::DataType& top_p,
                                                               const paddle::DataType& uniform) {
  return {paddle::DataType::INT64};
}

#define PADDLELLM_GENERATION_OP_(NAME, INPUTS, OUTPUT, KERNEL, INFER)                                    \
  PD_BUILD_OP(NAME)                                                                                      \
      .Inputs(INPUTS)                                                                                    \
      .Outputs({OUTPUT})                                                                                 \
      .SetKernelFn(PD_KERNEL(KERNEL))                                                                    \
      .SetInferShapeFn(PD_INFER_SHAPE(Generation##INFER##InferShape))                                    \
      .SetInferDtypeFn(PD_INFER_DTYPE(Generation##INFER##InferDtype))

#define PADDLELLM_BUILD_GENERATION_OPS(TOKEN_PENALTY, ARGMAX, TOP_P_SAMPLING, STOP_FLAGS)                          \
  PADDLELLM_GENERATION_OP_(paddlellm_token_penalty,                                                             \
                           PD_ARGS_({"logits", "pre_ids", "penalty_scores", "frequency_scores", "presence_scores", \
                                     "min_len", "cur_len", "eos_token_id"}),                                    \
                           "out", TOKEN_PENALTY, TokenPenalty);                                           \
  PADDLELLM_GENERATION_OP_(paddlellm_argmax, {"logits"}, "ids", ARGMAX, Argmax);                      \
  PADDLELLM_GENERATION_OP_(paddlellm_top_p_sampling,                                                            \
                           PD_ARGS_({"logits", "temperature", "top_k", "top_p", "uniform"}), "ids",             \
                           TOP_P_SAMPLING, TopPSampling);                                                   \
  PADDLELLM_GENERATION_OP_(paddlellm_stop_flags,                                                                \
                           PD_ARGS_({"next_tokens", "eos_token_id", "cur_len", "max_len", "stop_flags"}),       \
                           "stop_flags_out", STOP_FLAGS, StopFlags)
#define PD_ARGS_(...) __VA_ARGS__
