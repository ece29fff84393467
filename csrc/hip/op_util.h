// Helpers of the Paddle bindings (model_ops.cc, paged_ops.cc): messages, dtype codes, the tensor's stream.
// Host code only; compiled by the host compiler with Paddle's headers (-DPADDLE_WITH_HIP under ROCm).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hip_ops.h"
#include "paddle/extension.h"

namespace paddlellm_hip_binding {

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

inline const char* dtype_str(paddle::DataType t) {
  switch (t) {
    case paddle::DataType::FLOAT32:
      return "float32";
    case paddle::DataType::BFLOAT16:
      return "bfloat16";
    case paddle::DataType::FLOAT16:
      return "float16";
    case paddle::DataType::FLOAT64:
      return "float64";
    case paddle::DataType::INT8:
      return "int8";
    case paddle::DataType::UINT8:
      return "uint8";
    case paddle::DataType::INT32:
      return "int32";
    case paddle::DataType::INT64:
      return "int64";
    case paddle::DataType::BOOL:
      return "bool";
    default:
      return "an unsupported dtype";
  }
}

// A storage dtype the kernels take (float32, bfloat16, float16), or -1.
inline int storage_dtype(paddle::DataType t) {
  switch (t) {
    case paddle::DataType::FLOAT32:
      return paddlellm_hip::kFloat32;
    case paddle::DataType::BFLOAT16:
      return paddlellm_hip::kBFloat16;
    case paddle::DataType::FLOAT16:
      return paddlellm_hip::kFloat16;
    default:
      return -1;
  }
}

inline void check_gpu(const char* op, const char* name, const paddle::Tensor& t, const paddle::Tensor& first) {
  PD_CHECK(t.is_gpu(), op, ": ", name, " must be a GPU tensor");
  PD_CHECK(t.place() == first.place(), op, ": ", name, " is on another device than the op's first input");
}

inline void check_f32(const char* op, const char* name, const paddle::Tensor& t, const paddle::Tensor& first) {
  check_gpu(op, name, t, first);
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, op, ": ", name, " must be float32, got ", dtype_str(t.dtype()));
}

// The stream the op's kernels run on: the one Paddle runs the input tensor's work on.
inline void* stream_of(const paddle::Tensor& t) {
#if defined(PADDLE_WITH_HIP) || defined(PADDLE_WITH_CUDA)
  return reinterpret_cast<void*>(t.stream());
#else
  PD_THROW("paddlellm HIP ops: built against a Paddle without GPU support (no PADDLE_WITH_HIP): no stream for ",
           t.place().DebugString());
#endif
}

inline void check_launch(const char* op, int code) {
  PD_CHECK(code == 0, op, ": kernel launch failed: ", paddlellm_hip::error_string(code));
}

}  // namespace paddlellm_hip_binding
