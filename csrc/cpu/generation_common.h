// Shared by the generation ops (generation_ops.cc, sampling_ops.cc): input checks and the row scans.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "isa.h"
#include "op_text.h"
#include "paddle/extension.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// No FMA contraction in the generation ops: token_penalty rounds exactly where its reference does (SPEC.md), which a
// fused multiply-subtract (the default on aarch64, or with -march flags) would change. Without
// -ftrapping-math GCC if-converts the float selects below and vectorizes their loops; nothing here reads the
// FP exception flags. (The optimize pragma is GCC's; clang gets the standard FP_CONTRACT pragma.)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace paddlellm_generation_ops {

using paddlellm_cpu::dtype_str;
using paddlellm_cpu::shape_str;

constexpr int64_t kParallelMin = 1 << 15;  // logits elements below which a call stays on one thread
constexpr float kBanned = -1e10f;          // what token_penalty writes into eos logits below min length

// logits [S, V] float32 with V >= 1.
inline void check_logits(const char* op, const paddle::Tensor& logits, int64_t* S, int64_t* V) {
  PD_CHECK(logits.is_cpu(), op, ": logits must be a CPU tensor");
  const auto s = logits.shape();
  PD_CHECK(logits.dtype() == paddle::DataType::FLOAT32 && s.size() == 2 && s[1] >= 1, op,
           ": logits must be [rows, vocab] float32 with vocab >= 1, got ", shape_str(s), " ",
           dtype_str(logits.dtype()));
  PD_CHECK(s[1] < (int64_t{1} << 31), op, ": vocab must be below 2^31, got ", s[1]);
  *S = s[0];
  *V = s[1];
}

// One value per row: [S] of the given dtype.
inline void check_per_row(const char* op, const char* name, const paddle::Tensor& t, paddle::DataType dtype,
                          int64_t S) {
  PD_CHECK(t.is_cpu(), op, ": ", name, " must be a CPU tensor");
  const auto s = t.shape();
  PD_CHECK(t.dtype() == dtype && s.size() == 1 && s[0] == S, op, ": ", name, " must be [", S, "] ", dtype_str(dtype),
           " (one per row), got ", shape_str(s), " ", dtype_str(t.dtype()));
}

// eos ids [E] int64 (E >= 0); with V > 0 each must be a vocabulary id.
inline int64_t check_eos(const char* op, const paddle::Tensor& eos, int64_t V) {
  PD_CHECK(eos.is_cpu(), op, ": eos_token_id must be a CPU tensor");
  const auto s = eos.shape();
  PD_CHECK(eos.dtype() == paddle::DataType::INT64 && s.size() == 1, op, ": eos_token_id must be [E] int64, got ",
           shape_str(s), " ", dtype_str(eos.dtype()));
  const int64_t E = s[0];
  const int64_t* e = E ? eos.data<int64_t>() : nullptr;
  for (int64_t i = 0; V > 0 && i < E; ++i)
    PD_CHECK(e[i] >= 0 && e[i] < V, op, ": eos_token_id[", i, "] = ", e[i], " is not in [0, ", V, ") (the vocab)");
  return E;
}

inline bool parallel_rows(int64_t S, int64_t V) { return S > 1 && S * V > kParallelMin; }


// The largest value of a row (a NaN never wins; -inf for a row of -inf) and whether it holds a NaN. GCC does not
// vectorize a float max without -ffinite-math-only, so on x86-64 this is SSE (part of the x86-64 baseline):
// four running maxima of four lanes each, and an unordered compare for NaN.
inline float row_max(const float* x, int64_t V, bool* nan) {
  int64_t j = 0;
  float m = -std::numeric_limits<float>::infinity();
  bool bad = false;
#if defined(__SSE2__)
  __m128 m0 = _mm_set1_ps(m), m1 = m0, m2 = m0, m3 = m0;
  __m128 n0 = _mm_setzero_ps(), n1 = n0;
  for (; j + 16 <= V; j += 16) {
    const __m128 a = _mm_loadu_ps(x + j), b = _mm_loadu_ps(x + j + 4), c = _mm_loadu_ps(x + j + 8),
                 d = _mm_loadu_ps(x + j + 12);
    m0 = _mm_max_ps(a, m0);  // a NaN in the first operand gives the second
    m1 = _mm_max_ps(b, m1);
    m2 = _mm_max_ps(c, m2);
    m3 = _mm_max_ps(d, m3);
    n0 = _mm_or_ps(n0, _mm_or_ps(_mm_cmpunord_ps(a, a), _mm_cmpunord_ps(b, b)));
    n1 = _mm_or_ps(n1, _mm_or_ps(_mm_cmpunord_ps(c, c), _mm_cmpunord_ps(d, d)));
  }
  float lanes[4];
  _mm_storeu_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
  for (const float v : lanes) m = v > m ? v : m;
  bad = _mm_movemask_ps(_mm_or_ps(n0, n1)) != 0;
#endif
  for (; j < V; ++j) {
    m = x[j] > m ? x[j] : m;
    bad |= x[j] != x[j];
  }
  *nan = bad;
  return m;
}

// The first j >= from with x[j] > t (or == t when kEqual), V if none; 16 at a time (one compare mask).
template <bool kEqual>
inline int64_t first_at_least(const float* x, int64_t from, int64_t V, float t) {
  int64_t j = from;
#if defined(__SSE2__)
  const __m128 tt = _mm_set1_ps(t);
  auto hit = [&](__m128 v) { return kEqual ? _mm_cmpeq_ps(v, tt) : _mm_cmpgt_ps(v, tt); };
  for (; j + 16 <= V; j += 16) {
    const __m128 any = _mm_or_ps(_mm_or_ps(hit(_mm_loadu_ps(x + j)), hit(_mm_loadu_ps(x + j + 4))),
                                 _mm_or_ps(hit(_mm_loadu_ps(x + j + 8)), hit(_mm_loadu_ps(x + j + 12))));
    if (_mm_movemask_ps(any)) break;
  }
#endif
  for (; j < V; ++j)
    if (kEqual ? x[j] == t : x[j] > t) return j;
  return V;
}

}  // namespace paddlellm_generation_ops
