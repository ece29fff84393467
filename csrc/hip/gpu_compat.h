// The few GPU runtime names the kernels use, so one source compiles with hipcc (AMD; the sources are
// written against HIP) and with nvcc (NVIDIA: the hip* names below map to their CUDA twins).
// Device helpers shared by the kernels: warp reductions (warp-size agnostic: they loop on the runtime
// `warpSize`, 64 on gfx906/gfx90a/gfx928, 32 on NVIDIA) and float32 <-> storage dtype conversions.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) && !defined(__HIP__)  // nvcc
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define hipStream_t cudaStream_t
#define hipError_t cudaError_t
#define hipSuccess cudaSuccess
#define hipGetLastError cudaGetLastError
#define hipGetErrorString cudaGetErrorString
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipStreamSynchronize cudaStreamSynchronize
#define hipLaunchKernelGGL(kernel, grid, block, shmem, stream, ...) \
  kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__)
__device__ __forceinline__ float warp_xor(float v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
#else  // hipcc
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>
__device__ __forceinline__ float warp_xor(float v, int lane_mask) { return __shfl_xor(v, lane_mask); }
#endif

namespace paddlellm_hip {

// Reductions over the lanes of one warp; every lane gets the result. All lanes must call them.
__device__ __forceinline__ float warp_sum(float v) {
  for (int m = warpSize / 2; m > 0; m >>= 1) v += warp_xor(v, m);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int m = warpSize / 2; m > 0; m >>= 1) v = fmaxf(v, warp_xor(v, m));
  return v;
}

// Storage dtypes: float, bfloat16 (held as its raw bits, uint16_t) and float16 (__half).
typedef uint16_t bf16_bits;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16_bits v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);

template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}

// float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
template <>
__device__ __forceinline__ bf16_bits from_float<bf16_bits>(float v) {
  const uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<bf16_bits>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

}  // namespace paddlellm_hip
