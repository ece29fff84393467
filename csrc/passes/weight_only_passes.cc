// The HIP and NPU libraries' pass for quantized programs (paddlellm/ops/passes.py): a projection that dequantizes
// its int8 weight and multiplies (model.linear's portable form) -> paddlellm_weight_only_linear, which reads the
// int8 values and their scales as stored, so a step moves a quarter of the float32 weights' bytes. The CPU's
// linear passes take these projections first on the CPU (they repack the weights for int8 dot products).
#include <algorithm>
#include <vector>

#include "pass_util.h"
#include "packed_weights.h"

namespace {

using namespace paddlellm_passes;  // NOLINT

// x @ dequantize(W) in float32, or, in a 16-bit compute dtype, cast(cast(x) @ cast(dequantize(W))) back to
// float32 -> paddlellm_weight_only_linear(x, W, scale, offset). The activations' own quantization in front of an
// a8w8 weight (model.quantize_per_token) stays: the op multiplies what it is given.
class WeightOnlyLinearRewrite : public pir::RewritePattern {
 public:
  explicit WeightOnlyLinearRewrite(pir::IrContext* context) : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context) {}

  bool MatchAndRewrite(pir::Operation* matmul, pir::PatternRewriter& rewriter) const override {
    if (matmul->name() != "pd_op.matmul" || matmul->attribute<pir::BoolAttribute>("transpose_x").data() ||
        matmul->attribute<pir::BoolAttribute>("transpose_y").data())
      return false;
    pir::Value x = matmul->operand_source(0), w = matmul->operand_source(1);
    pir::Operation* result = matmul;  // the op whose float32 result the fused op replaces
    std::vector<pir::Operation*> narrowing;  // a 16-bit compute dtype's casts around the matmul
    if (!is_float32(w)) {
      pir::Operation* x_cast = defined_by(x, "pd_op.cast");
      pir::Operation* w_cast = defined_by(w, "pd_op.cast");
      if (!x_cast || !w_cast || !w.HasOneUse() || !matmul->result(0).HasOneUse()) return false;
      pir::Operation* widen = matmul->result(0).use_begin()->owner();
      if (widen->name() != "pd_op.cast" || !is_float32(widen->result(0))) return false;
      x = x_cast->operand_source(0);
      w = w_cast->operand_source(0);
      result = widen;
      narrowing = {widen, w_cast};
      if (x_cast->result(0).HasOneUse()) narrowing.push_back(x_cast);
    }
    Weight weight;
    if (!is_float32(x) || !weight_parameter(w, &weight) || !weight.scale ||
        pir::GetShapeFromValue(x).back() != pir::GetShapeFromValue(weight.param)[0])
      return false;
    rewriter.set_insertion_point(result);
    pir::Operation* fused = pir::CreateOperationByName(
        "custom_op.paddlellm_weight_only_linear", {x, weight.param, weight.scale, weight.offset}, {}, rewriter);
    rewriter.ReplaceAllUsesWith(result->result(0), fused->result(0));
    if (result != matmul) erase_with_constants(result, rewriter);
    erase_with_constants(matmul, rewriter);
    for (pir::Operation* op : narrowing)
      if (op != result) erase_with_constants(op, rewriter);
    for (pir::Operation* op : weight.feeding)  // the dequantization; the scales and offsets stay, the op reads them
      if (op->result(0) != weight.scale && op->result(0) != weight.offset) erase_with_constants(op, rewriter);
    return true;
  }
};

class WeightOnlyLinearPass : public OnePatternPass<WeightOnlyLinearRewrite> {
 public:
  WeightOnlyLinearPass() : OnePatternPass("paddlellm_weight_only_linear_pass") {}
};

}  // namespace

REGISTER_IR_PASS(paddlellm_weight_only_linear_pass, WeightOnlyLinearPass);
