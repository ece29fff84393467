// Paddle bindings of the generation helpers in the HIP library: the same ops as csrc/cpu (generation_ops.h
// registers them). Logits on the host (where the predictor samples) go to the CPU library's host kernels, which
// setup_hip.py builds into this library; logits on the GPU to generation.hip's kernels, with every input on the
// same GPU. On the GPU the inputs' shapes and dtypes are checked, their values are not (that would wait for the
// device): ids outside the vocabulary are skipped, and top_p_sampling gives -1 for a row holding NaN or +inf
// where the CPU op raises. Semantics: paddlellm/ops/SPEC.md.
#include <cstdint>
#include <vector>

#include "../cpu/generation_ops.h"
#include "hip_ops.h"
#include "op_util.h"
#include "paddle/extension.h"

using namespace paddlellm_hip_binding;
namespace kernels = paddlellm_hip;

// logits [S, V] float32 on a GPU, V >= 1.
static void gpu_rows(const char* op, const paddle::Tensor& logits, int64_t* S, int64_t* V) {
  check_f32(op, "logits", logits, logits);
  const auto s = logits.shape();
  PD_CHECK(s.size() == 2 && s[1] >= 1, op, ": logits must be [rows, vocab] with vocab >= 1, got ", shape_str(s));
  PD_CHECK(s[0] <= INT32_MAX, op, ": ", s[0], " rows is more than one launch takes (2^31 - 1)");
  *S = s[0];
  *V = s[1];
}

// One value per row, [S] of `dtype`, on first's GPU.
static void gpu_per_row(const char* op, const char* name, const paddle::Tensor& t, paddle::DataType dtype, int64_t S,
                        const paddle::Tensor& first) {
  check_gpu(op, name, t, first);
  PD_CHECK(t.dtype() == dtype && t.shape() == std::vector<int64_t>{S}, op, ": ", name, " must be [", S, "] ",
           dtype_str(dtype), " (one per row), got ", shape_str(t.shape()), " ", dtype_str(t.dtype()));
}

// eos ids [E] int64 on first's GPU; returns E.
static int64_t gpu_eos(const char* op, const paddle::Tensor& eos, const paddle::Tensor& first) {
  check_gpu(op, "eos_token_id", eos, first);
  PD_CHECK(eos.dtype() == paddle::DataType::INT64 && eos.shape().size() == 1, op,
           ": eos_token_id must be [E] int64, got ", shape_str(eos.shape()), " ", dtype_str(eos.dtype()));
  return eos.shape()[0];
}

std::vector<paddle::Tensor> HipTokenPenalty(const paddle::Tensor& logits, const paddle::Tensor& pre_ids,
                                            const paddle::Tensor& penalty_scores, const paddle::Tensor& frequency_scores,
                                            const paddle::Tensor& presence_scores, const paddle::Tensor& min_len,
                                            const paddle::Tensor& cur_len, const paddle::Tensor& eos_token_id) {
  if (logits.is_cpu())
    return GenerationTokenPenalty(logits, pre_ids, penalty_scores, frequency_scores, presence_scores, min_len, cur_len,
                                  eos_token_id);
  const char* op = "paddlellm_token_penalty";
  int64_t S, V;
  gpu_rows(op, logits, &S, &V);
  check_gpu(op, "pre_ids", pre_ids, logits);
  const auto ps = pre_ids.shape();
  PD_CHECK(pre_ids.dtype() == paddle::DataType::INT64 && ps.size() == 2 && ps[0] == S, op, ": pre_ids must be [", S,
           ", L] int64 (logits' rows), got ", shape_str(ps), " ", dtype_str(pre_ids.dtype()));
  gpu_per_row(op, "penalty_scores", penalty_scores, paddle::DataType::FLOAT32, S, logits);
  gpu_per_row(op, "frequency_scores", frequency_scores, paddle::DataType::FLOAT32, S, logits);
  gpu_per_row(op, "presence_scores", presence_scores, paddle::DataType::FLOAT32, S, logits);
  gpu_per_row(op, "min_len", min_len, paddle::DataType::INT64, S, logits);
  gpu_per_row(op, "cur_len", cur_len, paddle::DataType::INT64, S, logits);
  const int64_t E = gpu_eos(op, eos_token_id, logits);
  auto out = paddle::empty({S, V}, paddle::DataType::FLOAT32, logits.place());
  check_launch(op, kernels::token_penalty(logits.data<float>(), pre_ids.data<int64_t>(), ps[1],
                                          penalty_scores.data<float>(), frequency_scores.data<float>(),
                                          presence_scores.data<float>(), min_len.data<int64_t>(),
                                          cur_len.data<int64_t>(), eos_token_id.data<int64_t>(), E,
                                          out.data<float>(), S, V, stream_of(logits)));
  return {out};
}

std::vector<paddle::Tensor> HipArgmax(const paddle::Tensor& logits) {
  if (logits.is_cpu()) return GenerationArgmax(logits);
  const char* op = "paddlellm_argmax";
  int64_t S, V;
  gpu_rows(op, logits, &S, &V);
  auto ids = paddle::empty({S}, paddle::DataType::INT64, logits.place());
  check_launch(op, kernels::argmax(logits.data<float>(), S, V, ids.data<int64_t>(), stream_of(logits)));
  return {ids};
}

std::vector<paddle::Tensor> HipTopPSampling(const paddle::Tensor& logits, const paddle::Tensor& temperature,
                                            const paddle::Tensor& top_k, const paddle::Tensor& top_p,
                                            const paddle::Tensor& uniform) {
  if (logits.is_cpu()) return GenerationTopPSampling(logits, temperature, top_k, top_p, uniform);
  const char* op = "paddlellm_top_p_sampling";
  int64_t S, V;
  gpu_rows(op, logits, &S, &V);
  gpu_per_row(op, "temperature", temperature, paddle::DataType::FLOAT32, S, logits);
  gpu_per_row(op, "top_k", top_k, paddle::DataType::INT64, S, logits);
  gpu_per_row(op, "top_p", top_p, paddle::DataType::FLOAT32, S, logits);
  gpu_per_row(op, "uniform", uniform, paddle::DataType::FLOAT32, S, logits);
  auto ids = paddle::empty({S}, paddle::DataType::INT64, logits.place());
  auto weights = paddle::empty({S, V}, paddle::DataType::FLOAT64, logits.place());
  check_launch(op, kernels::top_p_sampling(logits.data<float>(), temperature.data<float>(), top_k.data<int64_t>(),
                                           top_p.data<float>(), uniform.data<float>(), weights.data<double>(), S, V,
                                           ids.data<int64_t>(), stream_of(logits)));
  return {ids};
}

std::vector<paddle::Tensor> HipStopFlags(const paddle::Tensor& next_tokens, const paddle::Tensor& eos_token_id,
                                         const paddle::Tensor& cur_len, const paddle::Tensor& max_len,
                                         const paddle::Tensor& stop_flags) {
  if (next_tokens.is_cpu()) return GenerationStopFlags(next_tokens, eos_token_id, cur_len, max_len, stop_flags);
  const char* op = "paddlellm_stop_flags";
  check_gpu(op, "next_tokens", next_tokens, next_tokens);
  const auto ns = next_tokens.shape();
  PD_CHECK(next_tokens.dtype() == paddle::DataType::INT64 && ns.size() == 1, op,
           ": next_tokens must be [S] int64, got ", shape_str(ns), " ", dtype_str(next_tokens.dtype()));
  const int64_t S = ns[0];
  const int64_t E = gpu_eos(op, eos_token_id, next_tokens);
  gpu_per_row(op, "cur_len", cur_len, paddle::DataType::INT64, S, next_tokens);
  gpu_per_row(op, "max_len", max_len, paddle::DataType::INT64, S, next_tokens);
  gpu_per_row(op, "stop_flags", stop_flags, paddle::DataType::BOOL, S, next_tokens);
  auto out = paddle::empty({S}, paddle::DataType::BOOL, next_tokens.place());
  check_launch(op, kernels::stop_flags(next_tokens.data<int64_t>(), eos_token_id.data<int64_t>(), E,
                                       cur_len.data<int64_t>(), max_len.data<int64_t>(), stop_flags.data<bool>(),
                                       out.data<bool>(), S, stream_of(next_tokens)));
  return {out};
}

PADDLELLM_BUILD_GENERATION_OPS(HipTokenPenalty, HipArgmax, HipTopPSampling, HipStopFlags);
