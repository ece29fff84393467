// CPU stand-in for the HIP runtime names csrc/hip's kernels use, so emulate/run.py can execute the real .hip
// sources with g++ on a machine without a GPU. Not a HIP implementation: one OS thread per GPU thread, blocks
// one after another, __syncthreads a std::barrier, shuffles through a per-warp buffer, warpSize a variable
// (run.py tries 64 and 32). "Device" pointers are host pointers.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__  // only `extern __shared__ float smem[]` is used: the array below

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
struct index3 {
  unsigned x, y, z;
};
inline thread_local index3 thread_index, block_index;
inline thread_local dim3 block_dim, grid_dim;
inline int warp_size = 64;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> lanes;  // shuffle exchange, one slot per thread of the block
constexpr size_t kSharedBytes = 1 << 18;

template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, size_t shared_bytes, Args... args) {
  const unsigned n = block.x * block.y * block.z;
  if (shared_bytes > kSharedBytes || n % warp_size) {
    fprintf(stderr, "emulate: bad launch (%zu shared bytes, %u threads)\n", shared_bytes, n);
    abort();
  }
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        std::barrier<> bar(n);
        block_barrier = &bar;
        warp_barriers.clear();
        for (unsigned w = 0; w < n / warp_size; ++w) warp_barriers.emplace_back(new std::barrier<>(warp_size));
        lanes.assign(n, 0.f);
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < n; ++t)
          threads.emplace_back([=] {
            thread_index = {t, 0, 0};
            block_index = {x, y, z};
            block_dim = block;
            grid_dim = grid;
            kernel(args...);
          });
        for (auto& t : threads) t.join();
      }
}
}  // namespace emu

namespace paddlellm_hip {
alignas(16) inline float smem[emu::kSharedBytes / sizeof(float)];
}

#define threadIdx emu::thread_index
#define blockIdx emu::block_index
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define warpSize emu::warp_size

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

inline float __shfl_xor(float v, int lane_mask) {
  const int t = threadIdx.x, w = t / warpSize, lane = t % warpSize;
  emu::lanes[t] = v;
  emu::warp_barriers[w]->arrive_and_wait();
  const float r = emu::lanes[w * warpSize + (lane ^ lane_mask)];
  emu::warp_barriers[w]->arrive_and_wait();
  return r;
}

inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __fmul_rn(float a, float b) { return a * b; }  // run.py compiles with -ffp-contract=off
inline int32_t atomicCAS(int32_t* p, int32_t expected, int32_t desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

typedef void* hipStream_t;
typedef int hipError_t;
enum { hipSuccess = 0 };
enum hipMemcpyKind { hipMemcpyDeviceToHost = 2 };
inline hipError_t hipGetLastError() { return hipSuccess; }
inline const char* hipGetErrorString(hipError_t) { return "emulated"; }
inline hipError_t hipMemcpyAsync(void* dst, const void* src, size_t n, hipMemcpyKind, hipStream_t) {
  std::memcpy(dst, src, n);
  return hipSuccess;
}
inline hipError_t hipStreamSynchronize(hipStream_t) { return hipSuccess; }
#define hipLaunchKernelGGL(kernel, grid, block, shared_bytes, stream, ...) \
  emu::launch(kernel, grid, block, shared_bytes, __VA_ARGS__)
