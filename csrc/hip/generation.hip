// The generation helpers on the GPU (paddlellm_token_penalty, paddlellm_argmax, paddlellm_top_p_sampling,
// paddlellm_stop_flags), semantics in SPEC.md. One block of kRowThreads threads per row of logits (stop_flags:
// one thread per row). Deterministic: block reductions run in a fixed tree order in shared memory, no float
// atomics, so the same inputs give the same bits on every run. No FMA contraction (the pragma below), so
// token_penalty rounds where the CPU kernel does and the sampling weights are the CPU's (exp_nonpositive.h).
//
// top_p_sampling without a sort: items are ranked by (logit desc, id asc), a 64-bit rank position
// key << 32 | id (key: the CPU's rank_key); "the item at which the running weight in rank order first reaches
// a target" is the smallest position whose prefix weight reaches it, found by bisection, 32 steps over the key
// and log2(V) over the id, each one pass over the row and a block sum. Three such crossings a row (top-k by
// count, top-p by weight, then the pick), ~150 passes: cheap next to a model step, and no scratch but the
// row's weights.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF  // before the includes: exp_nonpositive.h's arithmetic too
#endif

#include "../cpu/exp_nonpositive.h"
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kRowThreads = 256;  // a power of two (the tree reductions) and a multiple of every warp size
constexpr float kBanned = -1e10f;
constexpr uint64_t kNoItem = ~uint64_t{0};

// Combines one value per thread over the block in a fixed tree order; every thread gets the result. scratch:
// blockDim.x values of T in shared memory. All threads must call it.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* scratch, Op op) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) scratch[threadIdx.x] = op(scratch[threadIdx.x], scratch[threadIdx.x + s]);
    __syncthreads();
  }
  const T out = scratch[0];
  __syncthreads();  // scratch may be reused after this
  return out;
}

struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct Min {
  template <typename T>
  __device__ T operator()(T a, T b) const { return b < a ? b : a; }
};
struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};

// ---------------------------------------------------------------- argmax

// The better of two candidates by numpy.argmax's rule: a NaN wins (the lowest id among NaNs), else the larger
// logit, the lower id on ties (-0 == +0).
struct Best {
  float v;
  int32_t nan;
  int64_t id;
};
struct Better {
  __device__ Best operator()(Best a, Best b) const {
    if (a.nan != b.nan) return a.nan ? a : b;
    if (!a.nan && a.v != b.v) return a.v > b.v ? a : b;
    return a.id < b.id ? a : b;
  }
};

__global__ void argmax_kernel(const float* __restrict__ logits, int64_t V, int64_t* __restrict__ ids) {
  extern __shared__ float smem[];
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * V;
  Best best{-INFINITY, 0, INT64_MAX};  // loses to every entry of the row
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) best = Better()(best, Best{x[j], x[j] != x[j], j});
  best = block_reduce(best, reinterpret_cast<Best*>(smem), Better());
  if (threadIdx.x == 0) ids[blockIdx.x] = best.id;
}

int argmax(const float* logits, int64_t S, int64_t V, int64_t* ids, void* stream) {
  if (S == 0) return 0;
  hipLaunchKernelGGL(argmax_kernel, dim3(static_cast<unsigned>(S)), dim3(kRowThreads), kRowThreads * sizeof(Best),
                     static_cast<hipStream_t>(stream), logits, V, ids);
  return static_cast<int>(hipGetLastError());
}

// ---------------------------------------------------------------- stop_flags

__global__ void stop_flags_kernel(const int64_t* __restrict__ next, const int64_t* __restrict__ eos, int64_t E,
                                  const int64_t* __restrict__ cur_len, const int64_t* __restrict__ max_len,
                                  const bool* __restrict__ before, bool* __restrict__ out, int64_t S) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < S;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    bool stop = before[r] || cur_len[r] + 1 >= max_len[r];
    for (int64_t e = 0; e < E && !stop; ++e) stop = next[r] == eos[e];
    out[r] = stop;
  }
}

int stop_flags(const int64_t* next_tokens, const int64_t* eos, int64_t E, const int64_t* cur_len,
               const int64_t* max_len, const bool* stop_flags_in, bool* out, int64_t S, void* stream) {
  if (S == 0) return 0;
  const int64_t blocks = (S + kRowThreads - 1) / kRowThreads;
  hipLaunchKernelGGL(stop_flags_kernel, dim3(static_cast<unsigned>(blocks < 1024 ? blocks : 1024)),
                     dim3(kRowThreads), 0, static_cast<hipStream_t>(stream), next_tokens, eos, E, cur_len, max_len,
                     stop_flags_in, out, S);
  return static_cast<int>(hipGetLastError());
}

// ---------------------------------------------------------------- token_penalty

// Row r: copy the logits; for each distinct id among its pre_ids (up to the first negative entry) one thread,
// the one holding its first occurrence, counts it and writes its penalized logit (so every id has one writer):
//   x -> (x * p if x < 0 else x / p) in float32, then - count * frequency - presence in double, rounded once;
// then the eos logits become kBanned while cur_len < min_len. Rows with cur_len < 0 are copied unchanged. Ids
// outside [0, V) are skipped (the CPU op rejects them; a kernel cannot raise).
__global__ void token_penalty_kernel(const float* __restrict__ logits, const int64_t* __restrict__ pre_ids, int64_t L,
                                     const float* __restrict__ penalty, const float* __restrict__ frequency,
                                     const float* __restrict__ presence, const int64_t* __restrict__ min_len,
                                     const int64_t* __restrict__ cur_len, const int64_t* __restrict__ eos, int64_t E,
                                     float* __restrict__ out, int64_t V) {
  extern __shared__ float smem[];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  float* o = out + r * V;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) o[j] = x[j];
  if (cur_len[r] < 0) return;  // the whole block: an idle row
  const int64_t* ids = pre_ids + r * L;
  int64_t first_negative = L;
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x)
    if (ids[j] < 0 && j < first_negative) first_negative = j;
  const int64_t n = block_reduce(first_negative, reinterpret_cast<int64_t*>(smem), Min());  // also a barrier
  const float a = penalty[r], f = frequency[r], p = presence[r];
  if (n > 0 && !(a == 1.f && f == 0.f && p == 0.f)) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t id = ids[j];
      if (id >= V) continue;
      bool first = true;
      for (int64_t k = 0; k < j && first; ++k) first = ids[k] != id;
      if (!first) continue;
      int64_t count = 0;
      for (int64_t k = j; k < n; ++k) count += ids[k] == id;
      const float v = x[id];
      const float rep = v < 0.f ? v * a : v / a;
      o[id] = static_cast<float>((static_cast<double>(rep) - static_cast<double>(count) * static_cast<double>(f)) -
                                 static_cast<double>(p));
    }
  }
  __syncthreads();  // the penalties are written before an eos logit is banned
  if (cur_len[r] < min_len[r])
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x)
      if (eos[e] >= 0 && eos[e] < V) o[eos[e]] = kBanned;
}

int token_penalty(const float* logits, const int64_t* pre_ids, int64_t L, const float* penalty_scores,
                  const float* frequency_scores, const float* presence_scores, const int64_t* min_len,
                  const int64_t* cur_len, const int64_t* eos, int64_t E, float* out, int64_t S, int64_t V,
                  void* stream) {
  if (S == 0) return 0;
  hipLaunchKernelGGL(token_penalty_kernel, dim3(static_cast<unsigned>(S)), dim3(kRowThreads),
                     kRowThreads * sizeof(int64_t), static_cast<hipStream_t>(stream), logits, pre_ids, L,
                     penalty_scores, frequency_scores, presence_scores, min_len, cur_len, eos, E, out, V);
  return static_cast<int>(hipGetLastError());
}

// ---------------------------------------------------------------- top_p_sampling

// Rank order of a logit as 32 bits, smaller first (-0 and +0 alike): the CPU kernel's rank_key.
__device__ __forceinline__ uint64_t rank_position(const float* x, int64_t j) {
  const uint32_t u = __float_as_uint(x[j] + 0.f);
  const uint32_t key = (u & 0x80000000u) ? u : (~u & 0x7fffffffu);
  return (static_cast<uint64_t>(key) << 32) | static_cast<uint64_t>(j);
}

// One row's items ranked no later than `limit` (the candidates), weighing w[j] each or 1 each (kCount).
template <bool kCount>
struct RowItems {
  const float* x;
  const double* w;
  int64_t V;
  uint64_t limit;
  double* scratch;  // kRowThreads doubles of shared memory

  // Weight of the candidates ranked no later than `position`.
  __device__ double weight_upto(uint64_t position) const {
    const uint64_t upto = position < limit ? position : limit;
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
      if (rank_position(x, j) <= upto) acc += kCount ? 1.0 : w[j];
    return block_reduce(acc, scratch, Sum());
  }

  // The rank position of the first (last) candidate, of positive weight for the last.
  __device__ uint64_t first() const {
    uint64_t best = kNoItem;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const uint64_t pos = rank_position(x, j);
      if (pos <= limit && pos < best) best = pos;
    }
    return block_reduce(best, reinterpret_cast<uint64_t*>(scratch), Min());
  }
  __device__ uint64_t last_positive() const {
    uint64_t best = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const uint64_t pos = rank_position(x, j);
      if (pos <= limit && (kCount || w[j] > 0.0) && pos >= best) best = pos;
    }
    return block_reduce(best, reinterpret_cast<uint64_t*>(scratch), Max());
  }

  // The candidate at which the running weight in rank order first reaches target (> target when strict); the
  // last of positive weight if it never does (only by rounding). A rank position.
  __device__ uint64_t crossing(double target, bool strict) const {
    auto reaches = [&](double sum) { return strict ? sum > target : sum >= target; };
    if (!strict && target <= 0.0) return first();
    if (!reaches(weight_upto(limit))) return last_positive();
    uint64_t lo = 0, hi = limit >> 32;  // the key: the smallest whose items (all ids) reach the target
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (reaches(weight_upto((mid << 32) | 0xffffffffu))) hi = mid;
      else lo = mid + 1;
    }
    const uint64_t key = lo << 32;
    uint64_t id_lo = 0, id_hi = static_cast<uint64_t>(V - 1);  // then the id among that key's items
    while (id_lo < id_hi) {
      const uint64_t mid = id_lo + (id_hi - id_lo) / 2;
      if (reaches(weight_upto(key | mid))) id_hi = mid;
      else id_lo = mid + 1;
    }
    return key | id_lo;
  }
};

__global__ void top_p_sampling_kernel(const float* __restrict__ logits, const float* __restrict__ temperature,
                                      const int64_t* __restrict__ top_k, const float* __restrict__ top_p,
                                      const float* __restrict__ uniform, double* __restrict__ weights, int64_t V,
                                      int64_t* __restrict__ ids) {
  extern __shared__ float smem[];
  double* scratch = reinterpret_cast<double*>(smem);
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  double* w = weights + r * V;
  float m = -INFINITY;
  int32_t nan = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    nan |= x[j] != x[j];
    m = x[j] > m ? x[j] : m;
  }
  m = block_reduce(m, reinterpret_cast<float*>(smem), Max());
  nan = block_reduce(nan, reinterpret_cast<int32_t*>(smem), Max());
  if (nan || m == INFINITY || m == -INFINITY) {  // NaN, +inf, or no finite logit: the binding reports -1
    if (threadIdx.x == 0) ids[r] = -1;
    return;
  }
  const double dm = m, inv_t = 1.0 / static_cast<double>(temperature[r]);
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
    w[j] = paddlellm_generation_ops::exp_nonpositive((static_cast<double>(x[j]) - dm) * inv_t);
  __syncthreads();

  uint64_t limit = kNoItem;  // the candidates: the top k, or every item
  if (top_k[r] > 0 && top_k[r] < V)
    limit = RowItems<true>{x, w, V, kNoItem, scratch}.crossing(static_cast<double>(top_k[r]), false);
  RowItems<false> items{x, w, V, limit, scratch};
  double kept = items.weight_upto(limit);
  if (top_p[r] < 1.f) {  // the smallest prefix whose probability reaches top_p
    items.limit = items.crossing(static_cast<double>(top_p[r]) * kept, false);
    kept = items.weight_upto(items.limit);
  }
  const uint64_t pick = items.crossing(static_cast<double>(uniform[r]) * kept, true);
  if (threadIdx.x == 0) ids[r] = static_cast<int64_t>(pick & 0xffffffffu);
}

int top_p_sampling(const float* logits, const float* temperature, const int64_t* top_k, const float* top_p,
                   const float* uniform, double* weights, int64_t S, int64_t V, int64_t* ids, void* stream) {
  if (S == 0) return 0;
  hipLaunchKernelGGL(top_p_sampling_kernel, dim3(static_cast<unsigned>(S)), dim3(kRowThreads),
                     kRowThreads * sizeof(double), static_cast<hipStream_t>(stream), logits, temperature, top_k,
                     top_p, uniform, weights, V, ids);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
