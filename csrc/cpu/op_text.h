// Shapes and dtypes as text, for the ops' one-line errors.
#pragma once
#include <string>
#include <vector>

#include "paddle/extension.h"

namespace paddlellm_cpu {

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

}  // namespace paddlellm_cpu
