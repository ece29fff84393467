// Weight-only quantized linear (paddlellm_weight_only_linear):
//   out[m, n] = sum_k x[m, k] * W[k, n],  W[k, n] = weight[k, n] * scale[k / group, n] (+ offset[k / group, n])
// x float32 [M, K], weight int8 [K, N] row-major (int8 values, or int4 values 0..15 one a byte), scale/offset
// float32 [G, N] (group = K / G rows share a scale row). float32 products and sums (SPEC.md's "matmul"
// tolerance: rtol 1e-5, atol 1e-7 * K^1.5 + 1e-6 against float64).
//
// A block: kCols (64) consecutive output columns x R rows of x (R = 1, 2, 4 or 8, the smallest power of two
// >= M up to 8), 256 threads = kCols columns x kSplit (4) slices of K. Thread (slice, c) owns column
// n0 + c: consecutive threads take consecutive columns, so a warp's weight loads weight[k * N + n] are one
// contiguous run of bytes (at warp size 32 or 64). x is staged in shared memory kChunk (256) values of K at a
// time for the block's R rows; within a chunk, slice s walks its own quarter of it, dequantizing each weight
// once, w = q * scale (+ offset), with the scale/offset of the current group held in registers (reloaded at
// each group boundary), and adds x[r, k] * w to R float32 accumulators. At the end the 4 slices' partial sums
// go through shared memory and are added in a fixed order (deterministic, no atomics).
// grid.x = column tiles, grid.y = row tiles (at most 65535; the kernel loops over the rest).
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kWolCols = 64;                       // output columns per block
constexpr int kWolSplit = 4;                       // slices of K per block
constexpr int kWolThreads = kWolCols * kWolSplit;  // 256
constexpr int kWolChunk = 256;                     // values of K staged per row
constexpr int kWolSlice = kWolChunk / kWolSplit;   // values of K per slice and chunk
constexpr int64_t kWolMaxGridY = 65535;

template <int R, bool kOffset>
__global__ void weight_only_linear_kernel(const float* __restrict__ x, const int8_t* __restrict__ weight,
                                          const float* __restrict__ scale, const float* __restrict__ offset,
                                          float* __restrict__ out, int64_t M, int64_t K, int64_t N, int64_t group) {
  extern __shared__ float smem[];
  float* xs = smem;                   // [R, kWolChunk] the chunk of x's rows
  float* part = smem + R * kWolChunk;  // [kWolSplit, R, kWolCols] the slices' partial sums
  const int t = threadIdx.x;
  const int c = t % kWolCols, slice = t / kWolCols;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kWolCols;
  const int64_t n = n0 + c;
  const bool active = n < N;
  const int64_t row_tiles = (M + R - 1) / R;

  for (int64_t tile = blockIdx.y; tile < row_tiles; tile += gridDim.y) {
    const int64_t m0 = tile * R;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;

    for (int64_t k0 = 0; k0 < K; k0 += kWolChunk) {
      __syncthreads();  // the previous chunk (or tile) is no longer read
      for (int i = t; i < R * kWolChunk; i += kWolThreads) {
        const int r = i / kWolChunk, kk = i % kWolChunk;
        const int64_t m = m0 + r, k = k0 + kk;
        xs[i] = (m < M && k < K) ? x[m * K + k] : 0.f;
      }
      __syncthreads();
      int64_t lo = k0 + static_cast<int64_t>(slice) * kWolSlice;
      const int64_t hi = (lo + kWolSlice < K) ? lo + kWolSlice : K;
      if (!active) continue;
      while (lo < hi) {  // one run per group the slice's range touches
        const int64_t g = lo / group;
        const int64_t end = ((g + 1) * group < hi) ? (g + 1) * group : hi;
        const float s = scale[g * N + n];
        const float o = kOffset ? offset[g * N + n] : 0.f;
        for (int64_t k = lo; k < end; ++k) {
          const float q = static_cast<float>(weight[k * N + n]);
          const float w = kOffset ? q * s + o : q * s;
          const float* xk = xs + (k - k0);
#pragma unroll
          for (int r = 0; r < R; ++r) acc[r] += xk[r * kWolChunk] * w;
        }
        lo = end;
      }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) part[(slice * R + r) * kWolCols + c] = acc[r];
    __syncthreads();
    for (int i = t; i < R * kWolCols; i += kWolThreads) {
      const int r = i / kWolCols, cc = i % kWolCols;
      const int64_t m = m0 + r, nn = n0 + cc;
      if (m >= M || nn >= N) continue;
      float sum = part[r * kWolCols + cc];
      for (int sl = 1; sl < kWolSplit; ++sl) sum += part[(sl * R + r) * kWolCols + cc];
      out[m * N + nn] = sum;
    }
    // the next tile's first __syncthreads orders these reads of `part` before its writes
  }
}

template <int R>
static void launch_wol(const float* x, const int8_t* weight, const float* scale, const float* offset, float* out,
                       int64_t M, int64_t K, int64_t N, int64_t group, hipStream_t stream) {
  const int64_t col_tiles = (N + kWolCols - 1) / kWolCols, row_tiles = (M + R - 1) / R;
  const dim3 grid(static_cast<unsigned>(col_tiles),
                  static_cast<unsigned>(row_tiles < kWolMaxGridY ? row_tiles : kWolMaxGridY));
  const size_t shmem = (static_cast<size_t>(R) * kWolChunk + static_cast<size_t>(kWolSplit) * R * kWolCols) *
                       sizeof(float);  // 16 KiB at R = 8
  if (offset)
    hipLaunchKernelGGL((weight_only_linear_kernel<R, true>), grid, dim3(kWolThreads), shmem, stream, x, weight, scale,
                       offset, out, M, K, N, group);
  else
    hipLaunchKernelGGL((weight_only_linear_kernel<R, false>), grid, dim3(kWolThreads), shmem, stream, x, weight,
                       scale, offset, out, M, K, N, group);
}

int weight_only_linear(const float* x, const int8_t* weight, const float* scale, const float* offset, float* out,
                       int64_t M, int64_t K, int64_t N, int64_t G, void* stream) {
  if (M == 0 || N == 0) return 0;
  const int64_t group = G > 0 ? K / G : K;  // K = 0: no chunk runs, out = 0
  const hipStream_t s = static_cast<hipStream_t>(stream);
  if (M >= 5)  // R = the smallest power of two >= M, at most 8
    launch_wol<8>(x, weight, scale, offset, out, M, K, N, group, s);
  else if (M >= 3)
    launch_wol<4>(x, weight, scale, offset, out, M, K, N, group, s);
  else if (M == 2)
    launch_wol<2>(x, weight, scale, offset, out, M, K, N, group, s);
  else
    launch_wol<1>(x, weight, scale, offset, out, M, K, N, group, s);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
