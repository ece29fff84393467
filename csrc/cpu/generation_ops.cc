// Host kernels of the generation helpers, which choose the next token from the last-position logits:
//   paddlellm_token_penalty     repetition / frequency / presence penalties and the min-length eos ban
//                               (PaddleNLP's set_preids_token_penalty_multi_scores), into new logits
//   paddlellm_argmax            greedy ids (ties to the lowest id, NaN as numpy.argmax)
//   paddlellm_stop_flags        a row stops at an eos id or at its max length (PaddleNLP update_inputs_v2's stop part)
// Semantics: paddlellm/ops/SPEC.md. Plain C++, except: SSE (the x86-64 baseline) for the row scans GCC does not
// vectorize (a float max, compare-and-skip), and top_p_sampling's whole-row exp compiled per ISA (target
// attributes, chosen as the other kernels choose theirs). Rows are independent; they go over OpenMP threads only
// when a call is large (S * V > 2^15 and more than one row): at decode time a few rows of a small vocabulary cost
// less than opening a parallel region. Every row is computed in a fixed order, whatever the thread count or ISA.
#include "generation_common.h"
#include "generation_ops.h"

using namespace paddlellm_generation_ops;

// ---------------------------------------------------------------- token_penalty

std::vector<paddle::Tensor> GenerationTokenPenalty(const paddle::Tensor& logits, const paddle::Tensor& pre_ids,
                                                   const paddle::Tensor& penalty_scores,
                                                   const paddle::Tensor& frequency_scores,
                                                   const paddle::Tensor& presence_scores, const paddle::Tensor& min_len,
                                                   const paddle::Tensor& cur_len, const paddle::Tensor& eos_token_id) {
  const char* op = "paddlellm_token_penalty";
  int64_t S, V;
  check_logits(op, logits, &S, &V);
  PD_CHECK(pre_ids.is_cpu(), op, ": pre_ids must be a CPU tensor");
  const auto ps = pre_ids.shape();
  PD_CHECK(pre_ids.dtype() == paddle::DataType::INT64 && ps.size() == 2 && ps[0] == S, op, ": pre_ids must be [", S,
           ", L] int64 (logits' rows), got ", shape_str(ps), " ", dtype_str(pre_ids.dtype()));
  check_per_row(op, "penalty_scores", penalty_scores, paddle::DataType::FLOAT32, S);
  check_per_row(op, "frequency_scores", frequency_scores, paddle::DataType::FLOAT32, S);
  check_per_row(op, "presence_scores", presence_scores, paddle::DataType::FLOAT32, S);
  check_per_row(op, "min_len", min_len, paddle::DataType::INT64, S);
  check_per_row(op, "cur_len", cur_len, paddle::DataType::INT64, S);
  const int64_t E = check_eos(op, eos_token_id, V);
  const int64_t L = ps[1];
  auto out = paddle::empty({S, V}, paddle::DataType::FLOAT32, logits.place());
  if (S == 0) return {out};

  const float* x = logits.data<float>();
  const int64_t* ids = L ? pre_ids.data<int64_t>() : nullptr;
  const float* alpha = penalty_scores.data<float>();
  const float* beta = frequency_scores.data<float>();
  const float* gamma = presence_scores.data<float>();
  const int64_t* lo = min_len.data<int64_t>();
  const int64_t* cur = cur_len.data<int64_t>();
  const int64_t* eos = E ? eos_token_id.data<int64_t>() : nullptr;
  for (int64_t r = 0; r < S; ++r) {
    PD_CHECK(alpha[r] > 0.f && std::isfinite(alpha[r]), op, ": penalty_scores[", r, "] must be > 0 and finite, got ",
             alpha[r]);
    PD_CHECK(std::isfinite(beta[r]) && std::isfinite(gamma[r]), op, ": frequency_scores[", r, "] and presence_scores[",
             r, "] must be finite, got ", beta[r], " and ", gamma[r]);
    if (cur[r] < 0) continue;
    for (int64_t j = 0; j < L && ids[r * L + j] >= 0; ++j)  // a row's ids end at its first negative entry
      PD_CHECK(ids[r * L + j] < V, op, ": pre_ids[", r, ", ", j, "] = ", ids[r * L + j], " is not below vocab ", V);
  }
  float* o = out.data<float>();
#pragma omp parallel if (parallel_rows(S, V))
  {
    std::vector<int32_t> counts;  // occurrences per id of the row being done; zero again after each row
#pragma omp for
    for (int64_t r = 0; r < S; ++r) {
      const float* xr = x + r * V;
      float* orow = o + r * V;
      std::memcpy(orow, xr, sizeof(float) * V);
      if (cur[r] < 0) continue;  // an idle row: copied as it is
      const int64_t* row_ids = ids ? ids + r * L : nullptr;
      int64_t n = 0;
      while (n < L && row_ids[n] >= 0) ++n;
      if (n > 0 && !(alpha[r] == 1.f && beta[r] == 0.f && gamma[r] == 0.f)) {
        if (counts.empty()) counts.assign(V, 0);
        for (int64_t j = 0; j < n; ++j) ++counts[row_ids[j]];
        const double f = beta[r], p = gamma[r];
        for (int64_t j = 0; j < n; ++j) {  // each distinct id once, in the order of first occurrence
          const int64_t id = row_ids[j];
          const int32_t c = counts[id];
          if (c == 0) continue;
          counts[id] = 0;
          const float v = orow[id];
          const float rep = v < 0.f ? v * alpha[r] : v / alpha[r];  // float32, as HF and sampling.penalized
          const double freq = static_cast<double>(c) * f;
          orow[id] = static_cast<float>((static_cast<double>(rep) - freq) - p);  // one rounding at the end
        }
      }
      if (cur[r] < lo[r])
        for (int64_t e = 0; e < E; ++e) orow[eos[e]] = kBanned;
    }
  }
  return {out};
}

// ---------------------------------------------------------------- argmax

namespace paddlellm_generation_ops {

// Index of the largest entry, the lowest on ties; the first NaN if there is one (numpy.argmax's rule). Two
// passes: the largest value (vectorized), then the first entry equal to it, 16 at a time (-0 == +0).
static int64_t argmax_row(const float* x, int64_t V) {
  bool nan;
  const float m = row_max(x, V, &nan);
  if (nan) {
    int64_t j = 0;
    while (x[j] == x[j]) ++j;
    return j;
  }
  return first_at_least<true>(x, 0, V, m);  // found: m is one of the entries
}

}  // namespace paddlellm_generation_ops

std::vector<paddle::Tensor> GenerationArgmax(const paddle::Tensor& logits) {
  const char* op = "paddlellm_argmax";
  int64_t S, V;
  check_logits(op, logits, &S, &V);
  auto ids = paddle::empty({S}, paddle::DataType::INT64, logits.place());
  const float* x = logits.data<float>();
  int64_t* o = ids.data<int64_t>();
#pragma omp parallel for if (parallel_rows(S, V))
  for (int64_t r = 0; r < S; ++r) o[r] = argmax_row(x + r * V, V);
  return {ids};
}

// ---------------------------------------------------------------- stop_flags

std::vector<paddle::Tensor> GenerationStopFlags(const paddle::Tensor& next_tokens, const paddle::Tensor& eos_token_id,
                                                const paddle::Tensor& cur_len, const paddle::Tensor& max_len,
                                                const paddle::Tensor& stop_flags) {
  const char* op = "paddlellm_stop_flags";
  PD_CHECK(next_tokens.is_cpu(), op, ": next_tokens must be a CPU tensor");
  const auto ns = next_tokens.shape();
  PD_CHECK(next_tokens.dtype() == paddle::DataType::INT64 && ns.size() == 1, op,
           ": next_tokens must be [S] int64, got ", shape_str(ns), " ", dtype_str(next_tokens.dtype()));
  const int64_t S = ns[0];
  const int64_t E = check_eos(op, eos_token_id, 0);
  check_per_row(op, "cur_len", cur_len, paddle::DataType::INT64, S);
  check_per_row(op, "max_len", max_len, paddle::DataType::INT64, S);
  check_per_row(op, "stop_flags", stop_flags, paddle::DataType::BOOL, S);
  auto out = paddle::empty({S}, paddle::DataType::BOOL, next_tokens.place());
  if (S == 0) return {out};
  const int64_t* next = next_tokens.data<int64_t>();
  const int64_t* eos = E ? eos_token_id.data<int64_t>() : nullptr;
  const int64_t* cur = cur_len.data<int64_t>();
  const int64_t* lim = max_len.data<int64_t>();
  const bool* before = stop_flags.data<bool>();
  bool* o = out.data<bool>();
  for (int64_t r = 0; r < S; ++r) {
    bool stop = before[r] || cur[r] + 1 >= lim[r];
    for (int64_t e = 0; e < E && !stop; ++e) stop = next[r] == eos[e];
    o[r] = stop;
  }
  return {out};
}

