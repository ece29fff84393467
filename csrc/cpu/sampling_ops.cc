// paddlellm_top_p_sampling: temperature, top-k, top-p and an inverse-CDF pick with a uniform the caller draws
// (a generation helper; shared rules in generation_ops.cc and SPEC.md). Its whole-row exp is compiled per ISA.
#include "generation_common.h"  // first: its pragmas (no FMA contraction) cover the exp below too
#include "exp_nonpositive.h"
#include "generation_ops.h"

using namespace paddlellm_generation_ops;

// ---------------------------------------------------------------- top_p_sampling

namespace paddlellm_generation_ops {

// w[j] = e^((x[j] - m) * inv_t) over a whole row, and their sum in 8 lanes of a fixed order: most of a
// whole-vocabulary row's time, so compiled three times, for the x86-64 baseline and (target attributes) for AVX2
// and AVX-512, and chosen per call as the attention and linear kernels are (paddlellm_cpu::checked_isa,
// PADDLELLM_CPU_ISA). No FMA (fp-contract=off) and the lanes are the source's: every ISA gives the same bits.
static inline __attribute__((always_inline)) double row_weights_body(const float* x, int64_t V, double dm,
                                                                     double inv_t, double* w) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= V; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += w[j + l] = exp_nonpositive((x[j + l] - dm) * inv_t);
  for (int l = 0; j < V; ++j, ++l) lane[l] += w[j] = exp_nonpositive((x[j] - dm) * inv_t);
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

static double row_weights_scalar(const float* x, int64_t V, double dm, double inv_t, double* w) {
  return row_weights_body(x, V, dm, inv_t, w);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) static double row_weights_avx2(const float* x, int64_t V, double dm,
                                                                    double inv_t, double* w) {
  return row_weights_body(x, V, dm, inv_t, w);
}
__attribute__((target("avx512f,avx2,fma"))) static double row_weights_avx512(const float* x, int64_t V, double dm,
                                                                              double inv_t, double* w) {
  return row_weights_body(x, V, dm, inv_t, w);
}
#endif

using RowWeights = double (*)(const float*, int64_t, double, double, double*);
static RowWeights row_weights_for(int isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == paddlellm_cpu::kAvx512) return row_weights_avx512;
  if (isa == paddlellm_cpu::kAvx2) return row_weights_avx2;
#endif
  return row_weights_scalar;
}

// Ranking: a larger logit first, then a lower id. A candidate carries its logit, so comparisons read no row.
struct Cand {
  float x;
  int32_t id;
};
static inline bool ranks_before(const Cand& a, const Cand& b) { return a.x > b.x || (a.x == b.x && a.id < b.id); }

// A 32-bit key in rank order of the logit (smaller = ranked earlier; -0 and +0 alike), for radix selection.
static inline uint32_t rank_key(float v) {
  v = v + 0.f;  // -0 -> +0
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) ? u : (~u & 0x7fffffffu);
}

// Scratch of one thread, reused over its rows.
struct SampleScratch {
  std::vector<double> w;  // weights e^((x - max) / temperature), by id
  std::vector<int32_t> ids, tmp, work;  // candidate sets; the radix selection's items
  std::vector<Cand> head;
  std::vector<double> mass;
  std::vector<int32_t> count;
};

// The `want` best-ranked of a set, in rank order: a bounded heap whose root is the worst kept (partial selection,
// no sort of the set). The set is the whole row when ids is null: then, once the heap is full, only entries
// above its worst logit can enter (a later id with an equal logit ranks after it), and first_at_least skips to
// them 16 at a time. Else the listed ids.
static void best_ranked(const float* x, int64_t V, const std::vector<int32_t>* ids, size_t want,
                        std::vector<Cand>& heap) {
  heap.clear();
  if (want == 0) return;
  auto worse = [](const Cand& a, const Cand& b) { return ranks_before(b, a); };
  auto offer = [&](int32_t id) {
    const Cand c{x[id], id};
    if (heap.size() < want) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), ranks_before);  // a max-heap of rank: the root ranks last
      return;
    }
    if (!ranks_before(c, heap[0])) return;
    size_t i = 0;  // replace the root and sift it down
    const size_t n = heap.size();
    for (;;) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && worse(heap[child + 1], heap[child])) ++child;
      if (!worse(heap[child], c)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = c;
  };
  if (ids) {
    for (const int32_t id : *ids) offer(id);
  } else {
    int64_t j = 0;
    for (; j < V && heap.size() < want; ++j) offer(static_cast<int32_t>(j));
    while ((j = first_at_least<false>(x, j, V, heap[0].x)) < V) offer(static_cast<int32_t>(j++));
  }
  std::sort_heap(heap.begin(), heap.end(), ranks_before);
}

struct Crossing {
  int32_t id;     // the item
  double before;  // weight of the items ranked before it
};

// Among a set (the whole row when `set` is null, else the listed ids), taken in rank order: the item at which
// the running weight first reaches `target` (>= target; > target when strict); kCount: every item weighs 1. If the
// weight falls short (only by rounding), the last item of positive weight. The set's 64 best come first (a heap
// pass): most crossings of a language model's peaked softmax are there. Otherwise a radix selection on the
// 32-bit rank keys (12, 12 and 8 bits): a histogram of each level's digits (counts, or weights) finds the digit
// holding the crossing, and only that digit's items go on; after the last level all keys are equal, so the id
// order left is the rank order. Time O(set); no sort of the set.
template <bool kCount>
static Crossing crossing(const float* x, const double* w, int64_t V, const std::vector<int32_t>* set, double target,
                         bool strict, SampleScratch& s) {
  auto weight = [&](int32_t id) { return kCount ? 1.0 : w[id]; };
  const int64_t n = set ? static_cast<int64_t>(set->size()) : V;
  double acc = 0.0;
  bool to_last = false;  // the target is out of reach: follow the last item of positive weight
  auto reaches = [&](double sum) { return !to_last && (strict ? sum > target : sum >= target); };
  best_ranked(x, V, set, static_cast<size_t>(std::min<int64_t>(n, 64)), s.head);
  for (const Cand& c : s.head) {
    const double m = weight(c.id);
    if (reaches(acc + m)) return {c.id, acc};
    acc += m;
  }
  if (static_cast<int64_t>(s.head.size()) == n) {  // not reached: the last of positive weight
    size_t i = s.head.size() - 1;
    while (i > 0 && weight(s.head[i].id) == 0.0) acc -= weight(s.head[i--].id);
    return {s.head[i].id, acc - weight(s.head[i].id)};
  }

  static const int kShift[3] = {20, 8, 0};
  static const uint32_t kMask[3] = {0xfffu, 0xfffu, 0xffu};
  std::vector<int32_t>& ids = s.work;  // the items still in question (the set itself stays as it is)
  acc = 0.0;
  for (int level = 0; level < 3; ++level) {
    const bool whole_row = level == 0 && set == nullptr;  // then the items are 0 .. V-1, read in place
    const std::vector<int32_t>& items = level == 0 && set ? *set : ids;
    const int64_t count_items = whole_row ? V : static_cast<int64_t>(items.size());
    if (!whole_row && count_items <= 32) break;
    const int shift = kShift[level];
    const uint32_t mask = kMask[level];
    const size_t bins = mask + 1;
    auto digit_of = [&](int32_t id) { return (rank_key(x[id]) >> shift) & mask; };
    if (kCount) {
      s.count.assign(bins, 0);
      int32_t* count = s.count.data();
      if (whole_row)
        for (int64_t j = 0; j < V; ++j) ++count[digit_of(static_cast<int32_t>(j))];
      else
        for (const int32_t id : items) ++count[digit_of(id)];
    } else {
      s.mass.assign(bins, 0.0);
      double* mass = s.mass.data();
      if (whole_row)
        for (int64_t j = 0; j < V; ++j) mass[digit_of(static_cast<int32_t>(j))] += w[j];
      else
        for (const int32_t id : items) mass[digit_of(id)] += w[id];
    }
    size_t digit = bins, last = bins;
    double acc_last = acc;
    for (size_t d = 0; d < bins; ++d) {
      const double m = kCount ? static_cast<double>(s.count[d]) : s.mass[d];
      if (m == 0.0) continue;  // empty, or only zero weights (which never reach a target not yet reached)
      if (reaches(acc + m)) {
        digit = d;
        break;
      }
      last = d;
      acc_last = acc;
      acc += m;
    }
    if (digit == bins) {  // out of reach: the last digit of positive weight, and the last item from here on
      to_last = true;
      digit = last;
      acc = acc_last;
    }
    // The digit's items, in id order (a branch-free compaction).
    s.tmp.resize(count_items);
    int32_t* out = s.tmp.data();
    size_t kept = 0;
    if (whole_row) {
      for (int64_t j = 0; j < V; ++j) {
        out[kept] = static_cast<int32_t>(j);
        kept += digit_of(static_cast<int32_t>(j)) == digit;
      }
    } else {
      for (const int32_t id : items) {
        out[kept] = id;
        kept += digit_of(id) == digit;
      }
    }
    s.tmp.resize(kept);
    ids.swap(s.tmp);
  }
  // A few items left, or all with one key (then the ids are in rank order already): sort, then walk.
  auto before = [&](int32_t a, int32_t b) { return ranks_before(Cand{x[a], a}, Cand{x[b], b}); };
  if (!std::is_sorted(ids.begin(), ids.end(), before)) std::sort(ids.begin(), ids.end(), before);
  size_t last = 0;
  double acc_last = acc;
  for (size_t i = 0; i < ids.size(); ++i) {
    const double m = weight(ids[i]);
    if (reaches(acc + m)) return {ids[i], acc};
    if (m > 0.0) last = i, acc_last = acc;
    acc += m;
  }
  return {ids[last], acc_last};  // not reached (rounding): the last item of positive weight
}

// The items of a set (the whole row when `set` is null) ranked no later than `last`, in id order (a branch-free
// compaction). For the whole row, blocks of 16 with no logit >= x[last] are skipped after one compare.
static void ranked_up_to(const float* x, int64_t V, const std::vector<int32_t>* set, int32_t last,
                         std::vector<int32_t>& out) {
  const float xl = x[last];
  auto keep = [&](int32_t j) { return x[j] > xl || (x[j] == xl && j <= last); };
  out.resize(set ? set->size() : V);
  int32_t* o = out.data();
  size_t kept = 0;
  if (set) {
    for (const int32_t j : *set) {
      o[kept] = j;
      kept += keep(j);
    }
  } else {
    int64_t j = 0;
#if defined(__SSE2__)
    const __m128 t = _mm_set1_ps(xl);
    for (; j + 16 <= V; j += 16) {
      const __m128 any = _mm_or_ps(
          _mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(x + j), t), _mm_cmpge_ps(_mm_loadu_ps(x + j + 4), t)),
          _mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(x + j + 8), t), _mm_cmpge_ps(_mm_loadu_ps(x + j + 12), t)));
      if (!_mm_movemask_ps(any)) continue;
      for (int l = 0; l < 16; ++l) {
        o[kept] = static_cast<int32_t>(j + l);
        kept += keep(static_cast<int32_t>(j + l));
      }
    }
#endif
    for (; j < V; ++j) {
      o[kept] = static_cast<int32_t>(j);
      kept += keep(static_cast<int32_t>(j));
    }
  }
  out.resize(kept);
}

// The sampled id of one row, or -1 if the row holds NaN or +inf or no finite logit.
static int64_t sample_row(const float* x, int64_t V, float temperature, int64_t top_k, float top_p, float uniform,
                          RowWeights row_weights, SampleScratch& s) {
  bool nan;
  const float m = row_max(x, V, &nan);
  if (nan || std::isinf(m)) return -1;  // NaN, +inf, or all -inf
  const double dm = m, inv_t = 1.0 / static_cast<double>(temperature);
  s.w.resize(V);
  double* w = s.w.data();
  const int64_t k = top_k > 0 && top_k < V ? top_k : V;
  if (k <= 256 && k < V) {
    // A few candidates: select them by heap, in rank order, and walk their cumulative weight (as candidates()).
    best_ranked(x, V, nullptr, static_cast<size_t>(k), s.head);
    double total = 0.0;
    for (const Cand& c : s.head) total += w[c.id] = exp_nonpositive((c.x - dm) * inv_t);
    size_t keep = s.head.size();
    if (top_p < 1.f) {  // the smallest prefix whose probability reaches top_p
      double cum = 0.0;
      for (size_t i = 0; i < s.head.size(); ++i) {
        cum += w[s.head[i].id] / total;
        if (cum >= top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    double kept = 0.0;
    for (size_t i = 0; i < keep; ++i) kept += w[s.head[i].id];
    const double threshold = static_cast<double>(uniform) * kept;
    double cum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      cum += w[s.head[i].id];
      if (cum > threshold) return s.head[i].id;
    }
    return s.head[keep - 1].id;
  }
  std::vector<int32_t>* set = nullptr;  // the candidates: the whole row, or the top k
  double mass = 0.0;
  if (k < V) {
    const Crossing kth = crossing<true>(x, nullptr, V, nullptr, static_cast<double>(k), false, s);
    ranked_up_to(x, V, nullptr, kth.id, s.tmp);
    std::swap(s.tmp, s.ids);
    set = &s.ids;
    double lane[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (const int32_t id : *set) lane[i++ & 3] += w[id] = exp_nonpositive((x[id] - dm) * inv_t);
    mass = (lane[0] + lane[2]) + (lane[1] + lane[3]);
  } else {
    mass = row_weights(x, V, dm, inv_t, w);
  }
  if (top_p < 1.f) {  // the kept tokens: those ranked up to the first at which the probability reaches top_p
    const Crossing cut = crossing<false>(x, w, V, set, static_cast<double>(top_p) * mass, false, s);
    mass = cut.before + w[cut.id];
    ranked_up_to(x, V, set, cut.id, s.tmp);
    std::swap(s.tmp, s.ids);
    set = &s.ids;
  }
  return crossing<false>(x, w, V, set, static_cast<double>(uniform) * mass, true, s).id;
}

}  // namespace paddlellm_generation_ops

std::vector<paddle::Tensor> GenerationTopPSampling(const paddle::Tensor& logits, const paddle::Tensor& temperature,
                                                   const paddle::Tensor& top_k, const paddle::Tensor& top_p,
                                                   const paddle::Tensor& uniform) {
  const char* op = "paddlellm_top_p_sampling";
  int64_t S, V;
  check_logits(op, logits, &S, &V);
  check_per_row(op, "temperature", temperature, paddle::DataType::FLOAT32, S);
  check_per_row(op, "top_k", top_k, paddle::DataType::INT64, S);
  check_per_row(op, "top_p", top_p, paddle::DataType::FLOAT32, S);
  check_per_row(op, "uniform", uniform, paddle::DataType::FLOAT32, S);
  auto ids = paddle::empty({S}, paddle::DataType::INT64, logits.place());
  if (S == 0) return {ids};
  const float* x = logits.data<float>();
  const float* t = temperature.data<float>();
  const int64_t* k = top_k.data<int64_t>();
  const float* p = top_p.data<float>();
  const float* u = uniform.data<float>();
  for (int64_t r = 0; r < S; ++r) {
    PD_CHECK(t[r] > 0.f && std::isfinite(t[r]), op, ": temperature[", r, "] must be > 0 and finite, got ", t[r],
             " (greedy rows: top_k = 1)");
    PD_CHECK(k[r] >= 0, op, ": top_k[", r, "] must be >= 0 (0: no top-k), got ", k[r]);
    PD_CHECK(!std::isnan(p[r]), op, ": top_p[", r, "] is NaN");
    PD_CHECK(u[r] >= 0.f && u[r] < 1.f, op, ": uniform[", r, "] must be in [0, 1), got ", u[r]);
  }
  int64_t* o = ids.data<int64_t>();
  const RowWeights row_weights = row_weights_for(paddlellm_cpu::checked_isa());
#pragma omp parallel if (parallel_rows(S, V))
  {
    SampleScratch scratch;
#pragma omp for
    for (int64_t r = 0; r < S; ++r) o[r] = sample_row(x + r * V, V, t[r], k[r], p[r], u[r], row_weights, scratch);
  }
  for (int64_t r = 0; r < S; ++r)
    PD_CHECK(o[r] >= 0, op, ": logits row ", r, " holds NaN or +inf, or no finite value");
  return {ids};
}

