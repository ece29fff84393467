// CPU stand-in for the float16 names csrc/hip uses (see hip_runtime.h here): GCC's _Float16.
#pragma once
typedef _Float16 __half;
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half __float2half_rn(float f) { return static_cast<__half>(f); }  // round to nearest even
