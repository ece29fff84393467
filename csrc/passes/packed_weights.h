// The CPU passes' weights (cpu_passes.cc): recognising the weight operand of a projection in the portable
// program (a float parameter, a narrow one cast to float32, or an int8 one dequantized by its scales) and an input
// quantized per token (a8w8), and repacking the weight, in the predictor's parameter scope, into the layout the
// CPU's linear ops read (csrc/cpu/linear_kernel.h).
#pragma once

#include <cstdint>
#include <vector>

#include "pass_util.h"
#include "paddle/phi/core/dense_tensor.h"

namespace paddlellm_passes {

// The weight tensor of parameter `param` in the predictor's scope (on the CPU), or null.
phi::DenseTensor* scope_tensor(pir::Pass* pass, const pir::Value& param);

// Repacks the [K, N] weight of `param` in place (see packed_weights.cc); false if it cannot.
bool pack_weight(pir::Pass* pass, pir::Value param, bool swiglu, pir::Value scale = pir::Value(),
                 pir::Value offset = pir::Value(), bool a8w8 = false);

// The weight behind a matmul's weight operand: its parameter, its scales (and int4 offsets), and the ops that
// only feed it, users first (erased once the weight is packed).
struct Weight {
  pir::Value param, scale, offset;
  std::vector<pir::Operation*> feeding;
};

// Whether `w` is such a weight operand (packed_weights.cc lists the forms); fills `weight`.
bool weight_parameter(const pir::Value& w, Weight* weight);

// If `x` is X quantized per token in plain ops (model.py's quantize_per_token), X, with the ops that only feed x
// appended to `feeding`, users first; else a null value.
pir::Value per_token_input(const pir::Value& x, std::vector<pir::Operation*>* feeding);

}  // namespace paddlellm_passes
