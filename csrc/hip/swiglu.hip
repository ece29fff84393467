// SwiGLU (paddlellm_swiglu): out[r, j] = (gate * up) / (1 + exp(-gate)), gate = x[r, j], up = x[r, F + j],
// float32 in the order of Paddle's swiglu kernel. The exp argument is clamped to +-86 as the CPU kernel's
// is (SPEC.md): for gate > 86 the result is gate * up exactly; NaN in gives NaN out.
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kSwigluThreads = 256;

__global__ void swiglu_kernel(const float* __restrict__ x, float* __restrict__ out, int64_t n, int64_t F) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t r = e / F, j = e % F;
    const float gate = x[r * 2 * F + j], up = x[r * 2 * F + F + j];
    const float arg = fminf(fmaxf(-gate, -86.f), 86.f);  // fmaxf(NaN, -86) = -86: NaN flows through gate * up
    out[e] = (gate * up) / (1.f + expf(arg));
  }
}

int swiglu(const float* x, float* out, int64_t rows, int64_t F, void* stream) {
  const int64_t n = rows * F;
  if (n == 0) return 0;
  const int64_t blocks = (n + kSwigluThreads - 1) / kSwigluThreads;
  const unsigned grid = static_cast<unsigned>(blocks < (1 << 20) ? blocks : (1 << 20));  // grid-stride past that
  hipLaunchKernelGGL(swiglu_kernel, dim3(grid), dim3(kSwigluThreads), 0, static_cast<hipStream_t>(stream), x, out,
                     n, F);
  return static_cast<int>(hipGetLastError());
}

}  // namespace paddlellm_hip
