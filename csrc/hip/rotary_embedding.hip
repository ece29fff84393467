// Rotary embedding in place (paddlellm_rotary_embedding). Token t, frequency i:
//   angle = float(positions[t]) * inv_freq[i] (float32), c = cos(angle), s = sin(angle)
//   each pair (a, b) of every q and k head becomes (a*c - b*s, b*c + a*s), every product rounded (no FMA)
// pairs (i, i + D/2) (rotate-half, interleaved = false) or (2i, 2i + 1) (GPT-J, interleaved = true).
// One block per token: its cos/sin table in shared memory, then every pair of its q and k heads.
#include "gpu_compat.h"
#include "hip_ops.h"

#if defined(__clang__)
#pragma clang fp contract(off)  // hipcc: no a*c - b*s -> fma (HIP's __fmul_rn is a plain multiply)
#endif

namespace paddlellm_hip {

constexpr int kRotaryThreads = 128;

__global__ void rotary_kernel(float* __restrict__ q, float* __restrict__ k, const int32_t* __restrict__ positions,
                              const float* __restrict__ inv_freq, int64_t q_heads, int64_t k_heads, int64_t head_dim,
                              bool interleaved) {
  extern __shared__ float smem[];  // cos [D/2], sin [D/2]
  const int64_t half = head_dim / 2, t = blockIdx.x;
  float* cs = smem;
  float* sn = smem + half;
  const float p = static_cast<float>(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(p, inv_freq[i]);
    sincosf(angle, &sn[i], &cs[i]);
  }
  __syncthreads();
  const int64_t pairs = (q_heads + k_heads) * half;
  for (int64_t e = threadIdx.x; e < pairs; e += blockDim.x) {
    const int64_t h = e / half, i = e % half;
    float* v = h < q_heads ? q + (t * q_heads + h) * head_dim : k + (t * k_heads + (h - q_heads)) * head_dim;
    const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
    const float a = v[ia], b = v[ib], c = cs[i], s = sn[i];
    v[ia] = __fmul_rn(a, c) - __fmul_rn(b, s);
    v[ib] = __fmul_rn(b, c) + __fmul_rn(a, s);
  }
}

int rotary_embedding(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t tokens,
                     int64_t q_heads, int64_t k_heads, int64_t head_dim, bool interleaved, void* stream) {
  if (tokens == 0 || head_dim == 0) return 0;
  const size_t shmem = static_cast<size_t>(head_dim) * sizeof(float);
  hipLaunchKernelGGL(rotary_kernel, dim3(static_cast<unsigned>(tokens)), dim3(kRotaryThreads), shmem,
                     static_cast<hipStream_t>(stream), q, k, positions, inv_freq, q_heads, k_heads, head_dim,
                     interleaved);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
