// Writes this step's key (or value) rows into their cache blocks, in place (paddlellm_write_cache_kv):
// row r = token i of sequence s, position p = seq_lens_decoder[s] + i, goes to
// cache[block_tables[s][p / block_size], :, p % block_size, :], converted to the cache's dtype
// (float32 -> bfloat16/float16 round to nearest even; same dtype: the bits are copied).
// One block per row; nothing is written if the plan found a problem.
#include <type_traits>

#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kWriteThreads = 128;

template <typename Src, typename Dst>
__global__ void write_cache_kernel(PagedBatch b, const int32_t* __restrict__ workspace, const Src* __restrict__ src,
                                   Dst* __restrict__ cache) {
  const int32_t* cu = workspace + 4;
  const int32_t* seq_of_row = cu + b.S + 1;
  if (workspace[0] != kOk) return;
  const int64_t r = blockIdx.x, s = seq_of_row[r];
  const int64_t p = b.seq_lens_decoder[s] + (r - cu[s]);
  const int64_t blk = b.block_tables[s * b.max_blocks + p / b.block_size];
  const int64_t H = b.kv_heads, D = b.head_dim;
  for (int64_t e = threadIdx.x; e < H * D; e += blockDim.x) {
    const int64_t h = e / D, d = e % D;
    const Src v = src[r * H * D + e];
    Dst* out = cache + ((blk * H + h) * b.block_size + p % b.block_size) * D + d;
    if constexpr (std::is_same<Src, Dst>::value)
      *out = v;
    else
      *out = from_float<Dst>(to_float(v));
  }
}

template <typename Src, typename Dst>
static void launch_write(const PagedBatch& b, const int32_t* workspace, const void* src, void* cache,
                         hipStream_t stream) {
  hipLaunchKernelGGL((write_cache_kernel<Src, Dst>), dim3(static_cast<unsigned>(b.T)), dim3(kWriteThreads), 0,
                     stream, b, workspace, static_cast<const Src*>(src), static_cast<Dst*>(cache));
}

int write_cache_kv(const PagedBatch& b, const int32_t* workspace, const void* src, Dtype src_dtype, void* cache,
                   Dtype cache_dtype, void* stream) {
  if (b.T == 0) return 0;
  hipStream_t s = static_cast<hipStream_t>(stream);
  if (cache_dtype == kFloat32)
    launch_write<float, float>(b, workspace, src, cache, s);
  else if (cache_dtype == kBFloat16 && src_dtype == kFloat32)
    launch_write<float, bf16_bits>(b, workspace, src, cache, s);
  else if (cache_dtype == kBFloat16)
    launch_write<bf16_bits, bf16_bits>(b, workspace, src, cache, s);
  else if (src_dtype == kFloat32)
    launch_write<float, __half>(b, workspace, src, cache, s);
  else
    launch_write<__half, __half>(b, workspace, src, cache, s);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
