// Attention of a packed batch over paged K/V caches (paddlellm_block_attention), see SPEC.md:
// query token i of sequence s sits at position p = seq_lens_decoder[s] + i and attends to positions
// 0 .. p of s (the cache before this step plus this step's tokens up to itself: causal within a chunk);
// query head h reads KV head h / (num_heads / num_kv_heads) (GQA, K/V are not repeated).
//
// One block of threads per (packed row, KV head, slice of that KV head's query heads): a row's query
// heads of one KV head share every K/V load. The block walks the sequence's positions through its block
// table in chunks of kChunk with an online softmax, all in float32:
//   1. scores: one warp per position, its lanes over head_dim (coalesced K row), a warp sum per head;
//   2. softmax: one warp per head: chunk max, new running max m, probabilities, rescale factor;
//   3. acc[h, d] = acc[h, d] * rescale + sum_j p[h, j] V[j, d]: one thread per (head, d) (coalesced V rows).
// out = acc / running sum. bfloat16/float16 caches are widened on load.
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kAttnThreads = 256;           // a multiple of every warp size (32, 64)
constexpr int kChunk = 64;                  // cache positions per online-softmax step
constexpr int kMaxHeads = 8;                // query heads per block (the score loop keeps one sum each)
constexpr size_t kSharedBudget = 48 << 10;  // bytes: the default limit on NVIDIA, under AMD's 64 KiB

struct AttnShape {
  int64_t num_heads;
  int64_t group;            // query heads per KV head
  int64_t heads_per_block;  // query heads one block handles (<= kMaxHeads)
  int64_t splits;           // blocks per (row, KV head) = ceil(group / heads_per_block)
  float scale;              // 1 / sqrt(head_dim)
};

static size_t attn_shared_bytes(int64_t heads, int64_t head_dim) {
  return kChunk * sizeof(int64_t) + (2 * heads * head_dim + heads * kChunk + 3 * heads) * sizeof(float);
}

template <typename KV>
__global__ void attention_kernel(PagedBatch b, const int32_t* __restrict__ workspace, const float* __restrict__ q,
                                 const KV* __restrict__ key_cache, const KV* __restrict__ value_cache,
                                 float* __restrict__ out, AttnShape a) {
  extern __shared__ float smem[];
  const int64_t D = b.head_dim, hpb = a.heads_per_block;
  int64_t* row = reinterpret_cast<int64_t*>(smem);  // [kChunk] offset of each chunk position's K/V row
  float* qs = smem + 2 * kChunk;                    // [hpb, D] scaled queries
  float* acc = qs + hpb * D;                        // [hpb, D] running weighted sums of V
  float* sc = acc + hpb * D;                        // [hpb, kChunk] scores, then probabilities
  float* m = sc + hpb * kChunk;                     // [hpb] running max
  float* l = m + hpb;                               // [hpb] running sum
  float* rescale = l + hpb;                         // [hpb] exp(old max - new max) of the current chunk

  const int tid = threadIdx.x, lane = tid % warpSize, warp = tid / warpSize;
  const int warps = blockDim.x / warpSize;
  const int64_t r = blockIdx.x, g = blockIdx.y / a.splits;
  const int64_t h0 = g * a.group + (blockIdx.y % a.splits) * hpb;  // first query head of this block
  const int64_t hb = hpb < (g + 1) * a.group - h0 ? hpb : (g + 1) * a.group - h0;  // its query heads
  const int64_t HD = hb * D;
  const float* qrow = q + (r * a.num_heads + h0) * D;
  float* orow = out + (r * a.num_heads + h0) * D;

  if (workspace[0] != kOk) {  // the plan found a bad batch: no cache reads, NaN out
    for (int64_t e = tid; e < HD; e += blockDim.x) orow[e] = __uint_as_float(0x7fc00000u);
    return;
  }
  const int32_t* cu = workspace + 4;
  const int64_t s = cu[b.S + 1 + r];  // seq_of_row[r]
  const int64_t L = b.seq_lens_decoder[s] + (r - cu[s]) + 1;  // attends positions 0 .. L - 1
  const int32_t* table = b.block_tables + s * b.max_blocks;

  for (int64_t e = tid; e < HD; e += blockDim.x) {
    qs[e] = qrow[e] * a.scale;
    acc[e] = 0.f;
  }
  if (tid < hb) {
    m[tid] = -INFINITY;
    l[tid] = 0.f;
  }
  __syncthreads();

  for (int64_t c0 = 0; c0 < L; c0 += kChunk) {
    const int cnt = static_cast<int>(L - c0 < kChunk ? L - c0 : kChunk);

    // 1. scores sc[h, j] = q[h] . K[c0 + j]
    for (int j = warp; j < cnt; j += warps) {
      const int64_t pos = c0 + j;
      const int64_t off = ((static_cast<int64_t>(table[pos / b.block_size]) * b.kv_heads + g) * b.block_size +
                           pos % b.block_size) * D;
      const KV* krow = key_cache + off;
      float part[kMaxHeads];
#pragma unroll
      for (int h = 0; h < kMaxHeads; ++h) part[h] = 0.f;
      for (int64_t d = lane; d < D; d += warpSize) {
        const float k = to_float(krow[d]);
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h)
          if (h < hb) part[h] += qs[h * D + d] * k;
      }
#pragma unroll
      for (int h = 0; h < kMaxHeads; ++h) {
        if (h < hb) {  // the same for the whole block: every lane reaches the shuffles
          const float dot = warp_sum(part[h]);
          if (lane == 0) sc[h * kChunk + j] = dot;
        }
      }
      if (lane == 0) row[j] = off;
    }
    __syncthreads();

    // 2. online softmax: fold this chunk into each head's running max and sum
    for (int h = warp; h < hb; h += warps) {
      float* p = sc + h * kChunk;
      const float m_old = m[h];
      float mx = -INFINITY;
      for (int j = lane; j < cnt; j += warpSize) mx = fmaxf(mx, p[j]);
      const float m_new = fmaxf(m_old, warp_max(mx));
      float sum = 0.f;
      for (int j = lane; j < cnt; j += warpSize) {
        const float e = expf(p[j] - m_new);
        p[j] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float f = expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        rescale[h] = f;
        l[h] = l[h] * f + sum;
        m[h] = m_new;
      }
    }
    __syncthreads();

    // 3. acc = acc * rescale + P V
    for (int64_t e = tid; e < HD; e += blockDim.x) {
      const int64_t h = e / D, d = e % D;
      const float* p = sc + h * kChunk;
      float x = acc[e] * rescale[h];
      for (int j = 0; j < cnt; ++j) x += p[j] * to_float(value_cache[row[j] + d]);
      acc[e] = x;
    }
    __syncthreads();  // sc and row are rewritten by the next chunk
  }

  for (int64_t e = tid; e < HD; e += blockDim.x) orow[e] = acc[e] / l[e / D];
}

int64_t block_attention_max_head_dim() {  // attn_shared_bytes(1, d) <= kSharedBudget
  return static_cast<int64_t>((kSharedBudget - kChunk * sizeof(int64_t) - (kChunk + 3) * sizeof(float)) /
                              (2 * sizeof(float)));
}

template <typename KV>
static void launch_attention(const PagedBatch& b, const int32_t* workspace, const float* q, const void* kc,
                             const void* vc, float* out, const AttnShape& a, hipStream_t stream) {
  const dim3 grid(static_cast<unsigned>(b.T), static_cast<unsigned>(b.kv_heads * a.splits));
  hipLaunchKernelGGL((attention_kernel<KV>), grid, dim3(kAttnThreads), attn_shared_bytes(a.heads_per_block, b.head_dim),
                     stream, b, workspace, q, static_cast<const KV*>(kc), static_cast<const KV*>(vc), out, a);
}

int block_attention(const PagedBatch& b, const int32_t* workspace, const float* q, int64_t num_heads,
                    const void* key_cache, const void* value_cache, Dtype cache_dtype, float* out, void* stream) {
  if (b.T == 0) return 0;
  if (attn_shared_bytes(1, b.head_dim) > kSharedBudget) return -1;
  AttnShape a;
  a.num_heads = num_heads;
  a.group = num_heads / b.kv_heads;
  int64_t most = a.group < kMaxHeads ? a.group : kMaxHeads;  // heads a block can take
  while (most > 1 && attn_shared_bytes(most, b.head_dim) > kSharedBudget) --most;
  a.splits = (a.group + most - 1) / most;
  a.heads_per_block = (a.group + a.splits - 1) / a.splits;  // even slices: 9 heads -> 5 + 4, not 8 + 1
  a.scale = 1.f / sqrtf(static_cast<float>(b.head_dim));
  hipStream_t s = static_cast<hipStream_t>(stream);
  if (cache_dtype == kFloat32)
    launch_attention<float>(b, workspace, q, key_cache, value_cache, out, a, s);
  else if (cache_dtype == kBFloat16)
    launch_attention<bf16_bits>(b, workspace, q, key_cache, value_cache, out, a, s);
  else
    launch_attention<__half>(b, workspace, q, key_cache, value_cache, out, a, s);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
