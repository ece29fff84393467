// Kernels (block attention, linear), plain C++ (runs on any x86-64 or other CPU): the fallback path.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "attention_kernel.h"
#include "linear_kernel.h"

namespace paddlellm_cpu {
namespace scalar {

struct V {
  static constexpr int LINEAR_ROWS = 4;  // input rows a linear tile holds in registers
  static constexpr int W = 1;
  using reg = float;
  static reg zero() { return 0.f; }
  static reg set1(float x) { return x; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg v) { *p = v; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg div(reg a, reg b) { return a / b; }
  static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static float hsum(reg a) { return a; }
  static void hsum4(reg a, reg b, reg c, reg d, float* out) {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
  }
  static reg exp(reg a) { return expf(a); }
  static reg load_i8(const int8_t* p) { return static_cast<float>(*p); }
  static void load_u4_pair(const uint8_t* p, reg* lo, reg* hi) {
    *lo = static_cast<float>(*p & 15);
    *hi = static_cast<float>(*p >> 4);
  }
  static reg load_f16(const uint16_t* p) {  // as kernels_avx2.cc's: bits moved over, times 2^112, the sign back
    uint32_t magnitude = static_cast<uint32_t>(*p & 0x7fff) << 13, two_112 = 0x77800000u;
    float m, scale;
    memcpy(&m, &magnitude, sizeof m);
    memcpy(&scale, &two_112, sizeof scale);
    return (*p & 0x8000) ? -(m * scale) : m * scale;
  }
  static reg load_bf16(const uint16_t* p) {
    uint32_t u = static_cast<uint32_t>(*p) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
  // int4 x int8 dot products (linear_body.inc): a lane is a column's 4 bytes
  static constexpr bool kIntDot = true;
  static constexpr int INT4_ROWS = 1;
  using ivec = int32_t;  // 4 bytes: 4 activations, or a column's 4 rows of 4 bits, or a sum
  static ivec izero() { return 0; }
  static ivec broadcast4(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
  }
  static void nibbles(const uint8_t* p, ivec* lo, ivec* hi) {
    uint32_t b;
    memcpy(&b, p, sizeof b);
    *lo = static_cast<int32_t>(b & 0x0F0F0F0Fu);
    *hi = static_cast<int32_t>((b >> 4) & 0x0F0F0F0Fu);
  }
  static ivec dot(ivec acc, ivec u8, ivec s8) {
    uint8_t a[4];
    int8_t x[4];
    memcpy(a, &u8, 4);
    memcpy(x, &s8, 4);
    return acc + a[0] * x[0] + a[1] * x[1] + a[2] * x[2] + a[3] * x[3];
  }
  static reg to_float(ivec v) { return static_cast<float>(v); }
  static constexpr int A8W8_ROWS = 1;  // a8w8: the biased weights as they are, unsigned (dot)
  static constexpr int32_t kWeightBias = 128;
  static ivec biased_weights(const uint8_t* p) { return broadcast4(reinterpret_cast<const int8_t*>(p)); }
  static ivec dot_biased(ivec acc, ivec w, ivec x) { return dot(acc, w, x); }
  static ivec iset1(int32_t v) { return v; }
  static ivec isub(ivec a, ivec b) { return a - b; }
};

#include "attention_body.inc"
#include "linear_body.inc"

}  // namespace scalar

void attend_scalar(const AttnParams& p, const AttnItem& item, float* scratch) {
  scalar::attend_item(p, item, scratch);
}

void linear_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  scalar::linear_block_any(p, nb, m0, m1);
}

void linear_swiglu_block_scalar(const LinearParams& p, int64_t nb, int64_t m0, int64_t m1) {
  scalar::linear_swiglu_block_any(p, nb, m0, m1);
}

}  // namespace paddlellm_cpu
