// RMSNorm, optionally after a residual add (paddlellm_rms_norm, paddlellm_fused_add_rms_norm):
//   residual_out = x + residual                    (with a residual)
//   out = (v * rsqrt(mean(v * v) + epsilon)) * weight,  v = x or residual_out
// One block per row; the sum of squares is float32, reduced over the block (SPEC.md: 2e-6 relative).
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kNormThreads = 256;

// Sum of v over the block; every thread gets it. scratch: one float per warp (blockDim.x floats is
// always enough). All threads must call it.
__device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
  const int warps = (blockDim.x + warpSize - 1) / warpSize;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;  // warps <= warpSize: blockDim.x <= warpSize^2
  v = warp_sum(v);
  __syncthreads();  // scratch may be reused after this
  return v;
}

template <typename W, bool kResidual>
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ residual,
                                const W* __restrict__ weight, float* __restrict__ out,
                                float* __restrict__ residual_out, int64_t hidden, float epsilon) {
  extern __shared__ float smem[];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * hidden;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    float v = x[base + j];
    if (kResidual) {
      v = v + residual[base + j];
      residual_out[base + j] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss, smem);
  const float r = 1.f / sqrtf(ss / static_cast<float>(hidden) + epsilon);
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    const float v = kResidual ? x[base + j] + residual[base + j] : x[base + j];  // the same float add
    out[base + j] = (v * r) * to_float(weight[j]);
  }
}

template <typename W>
static void launch_norm(const float* x, const float* residual, const W* weight, float* out, float* residual_out,
                        int64_t rows, int64_t hidden, float epsilon, hipStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows)), block(kNormThreads);
  const size_t shmem = kNormThreads * sizeof(float);
  if (residual)
    hipLaunchKernelGGL((rms_norm_kernel<W, true>), grid, block, shmem, stream, x, residual, weight, out,
                       residual_out, hidden, epsilon);
  else
    hipLaunchKernelGGL((rms_norm_kernel<W, false>), grid, block, shmem, stream, x, residual, weight, out,
                       residual_out, hidden, epsilon);
}

int rms_norm(const float* x, const float* residual, const void* weight, Dtype weight_dtype, float* out,
             float* residual_out, int64_t rows, int64_t hidden, float epsilon, void* stream) {
  if (rows == 0) return 0;
  hipStream_t s = static_cast<hipStream_t>(stream);
  if (weight_dtype == kFloat32)
    launch_norm(x, residual, static_cast<const float*>(weight), out, residual_out, rows, hidden, epsilon, s);
  else if (weight_dtype == kBFloat16)
    launch_norm(x, residual, static_cast<const bf16_bits*>(weight), out, residual_out, rows, hidden, epsilon, s);
  else
    launch_norm(x, residual, static_cast<const __half*>(weight), out, residual_out, rows, hidden, epsilon, s);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
