// IR passes (PIR, DRR) that put the op set's ops in place of the plain Paddle subgraphs the portable exported step
// holds (paddlellm/models/llama/model.py). Built into every op library (the CPU's, csrc/hip's, csrc/npu's), whose
// ops of the same names they insert; which device runs which pass, and how often each should match on a Llama:
// paddlellm/ops/passes.py. A pattern that does not match does nothing, silently: tests check every match count.
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pass_util.h"

namespace paddlellm_passes {

std::mutex matches_mutex;
std::map<std::string, int64_t> last_matches;

void record_matches(const std::string& pass, int64_t matches) {
  std::lock_guard<std::mutex> lock(matches_mutex);
  last_matches[pass] = matches;
}

}  // namespace paddlellm_passes

namespace {

using namespace paddlellm_passes;  // NOLINT
using paddle::drr::MatchContext;

// x * rsqrt(mean(x * x, axis=-1, keepdim) + epsilon) * w, x float32, as model.rms_norm writes it (the "+ epsilon"
// is a scale op with bias epsilon) -> paddlellm_rms_norm(x, w){epsilon}. A weight kept narrow reaches the last
// multiply through a cast, which stays: the op then gets the float32 weight.
class RmsNormPattern : public paddle::drr::DrrPatternBase {
 public:
  std::string name() const override { return "PaddlellmRmsNormPattern"; }

  void operator()(paddle::drr::DrrPatternContext* ctx) const override {
    paddle::drr::SourcePattern pat = ctx->SourcePattern();
    const auto& square = pat.Op("pd_op.multiply");
    const auto& mean = pat.Op("pd_op.mean", {{"keepdim", pat.Attr("keepdim")}});
    const auto& axis = pat.Op("pd_op.full_int_array", {{"value", pat.Attr("axis")}});
    const auto& one = pat.Op("pd_op.full", {{"value", pat.Attr("scale")}});
    const auto& add_epsilon =
        pat.Op("pd_op.scale", {{"bias", pat.Attr("epsilon")}, {"bias_after_scale", pat.Attr("bias_after_scale")}});
    const auto& rsqrt = pat.Op("pd_op.rsqrt");
    const auto& normalize = pat.Op("pd_op.multiply");
    const auto& weigh = pat.Op("pd_op.multiply");
    pat.Tensor("square") = square(pat.Tensor("x"), pat.Tensor("x"));
    pat.Tensor("mean") = mean(pat.Tensor("square"), axis());
    pat.Tensor("shifted") = add_epsilon(pat.Tensor("mean"), one());
    pat.Tensor("inverse_rms") = rsqrt(pat.Tensor("shifted"));
    pat.Tensor("normalized") = normalize(pat.Tensor("x"), pat.Tensor("inverse_rms"));
    pat.Tensor("out") = weigh(pat.Tensor("normalized"), pat.Tensor("w"));
    pat.AddConstraint([](const MatchContext& m) {
      const auto axis = m.Attr<std::vector<int64_t>>("axis");
      const auto x_shape = pir::GetShapeFromValue(m.Tensor("x"));
      const auto w_shape = pir::GetShapeFromValue(m.Tensor("w"));
      const int64_t rank = static_cast<int64_t>(x_shape.size());
      const bool last_axis = axis.size() == 1 && (axis[0] == -1 || axis[0] == rank - 1);
      return last_axis && m.Attr<bool>("keepdim") && m.Attr<bool>("bias_after_scale") &&
             std::abs(m.Attr<double>("scale") - 1.0) < 1e-12 && is_float32(m.Tensor("x")) && w_shape.size() == 1 &&
             w_shape[0] == x_shape.back();
    });
    paddle::drr::ResultPattern res = pat.ResultPattern();
    const auto& rms_norm = res.Op("custom_op.paddlellm_rms_norm", {{"epsilon", pat.Attr("epsilon")}});
    rms_norm({&res.Tensor("x"), &res.Tensor("w")}, {&res.Tensor("out")});
  }
};

// One rotation of model.rope, rooted at its add: x * cos + concat([-x2, x1], -1) * sin, [x1, x2] = split(x, 2).
// Fills x, the cos and sin ops and the rotation's own ops (to erase, last first).
bool match_rotation(pir::Operation* add, pir::Value* x, pir::Operation** cos, pir::Operation** sin,
                    std::vector<pir::Operation*>* ops) {
  if (add->name() != "pd_op.add") return false;
  pir::Operation* times_cos = defined_by(add->operand_source(0), "pd_op.multiply");
  pir::Operation* times_sin = defined_by(add->operand_source(1), "pd_op.multiply");
  if (!times_cos || !times_sin) return false;
  *cos = defined_by(times_cos->operand_source(1), "pd_op.cos");
  *sin = defined_by(times_sin->operand_source(1), "pd_op.sin");
  pir::Operation* concat = defined_by(times_sin->operand_source(0), "pd_op.concat");
  pir::Operation* pair = concat ? defined_by(concat->operand_source(0), "builtin.combine") : nullptr;
  if (!*cos || !*sin || (*cos)->operand_source(0) != (*sin)->operand_source(0) || !pair || pair->num_operands() != 2)
    return false;
  pir::Operation* negate = defined_by(pair->operand_source(0), "pd_op.scale");
  if (!negate || full_value(negate->operand_source(1)) != -1.0 ||
      negate->attribute<pir::FloatAttribute>("bias").data() != 0.f)
    return false;
  pir::Operation* unpack = defined_by(negate->operand_source(0), "builtin.split");
  if (!unpack || unpack->num_results() != 2 || pair->operand_source(1) != unpack->result(0) ||
      negate->operand_source(0) != unpack->result(1))
    return false;
  pir::Operation* halves = defined_by(unpack->operand_source(0), "pd_op.split_with_num");
  if (!halves || halves->attribute<pir::Int32Attribute>("num").data() != 2) return false;
  *x = halves->operand_source(0);
  if (times_cos->operand_source(0) != *x || !is_float32(*x) || pir::GetShapeFromValue(*x).size() != 3) return false;
  *ops = {add, times_sin, times_cos, concat, pair, negate, unpack, halves};
  return true;
}

// model.rope on q and k  ->  paddlellm_rotary_embedding_(q, k, positions, inv_freq){interleaved = false}, in place.
// The angles: unsqueeze(tile(f, [1, 2]), 1), f = unsqueeze(cast(positions, float32), -1) * inv_freq. Both
// rotations share them; the pattern is rooted at either add and rewrites both. (A plain pattern: a DRR result
// cannot create an in-place custom op.)
class RotaryRewrite : public pir::RewritePattern {
 public:
  explicit RotaryRewrite(pir::IrContext* context) : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context) {}

  bool MatchAndRewrite(pir::Operation* add, pir::PatternRewriter& rewriter) const override {
    pir::Value x[2];
    pir::Operation *cos[2], *sin[2];
    std::vector<pir::Operation*> ops[2];
    if (!match_rotation(add, &x[0], &cos[0], &sin[0], &ops[0])) return false;
    // the other rotation: the other user of cos
    pir::Operation* other = nullptr;
    for (auto use = cos[0]->result(0).use_begin(); use != cos[0]->result(0).use_end(); ++use) {
      pir::Operation* times = use->owner();
      if (times == ops[0][2] || times->name() != "pd_op.multiply" || !times->result(0).HasOneUse()) continue;
      other = times->result(0).use_begin()->owner();
    }
    if (other == nullptr || !match_rotation(other, &x[1], &cos[1], &sin[1], &ops[1]) || cos[1] != cos[0] ||
        sin[1] != sin[0] || cos[0]->result(0).use_count() != 2 || sin[0]->result(0).use_count() != 2)
      return false;
    pir::Operation* head_unsqueeze = defined_by(cos[0]->operand_source(0), "pd_op.unsqueeze");
    pir::Operation* tile = head_unsqueeze ? defined_by(head_unsqueeze->operand_source(0), "pd_op.tile") : nullptr;
    pir::Operation* times = tile ? defined_by(tile->operand_source(0), "pd_op.multiply") : nullptr;
    pir::Operation* unsqueeze = times ? defined_by(times->operand_source(0), "pd_op.unsqueeze") : nullptr;
    pir::Operation* cast = unsqueeze ? defined_by(unsqueeze->operand_source(0), "pd_op.cast") : nullptr;
    if (!cast) return false;
    const pir::Value positions = cast->operand_source(0), inv_freq = times->operand_source(1);
    if (!pir::GetDataTypeFromValue(positions).isa<pir::Int32Type>() || !is_float32(inv_freq)) return false;
    for (pir::Operation* op : {head_unsqueeze, tile, times, unsqueeze, cast})
      if (op->result(0).use_count() != 1 && op != head_unsqueeze) return false;
    if (head_unsqueeze->result(0).use_count() != 2) return false;  // cos and sin

    // Insert where the earlier rotation's add was: the rest of both rotations and their inputs come before it.
    pir::Operation* first = comes_before(ops[0][0], ops[1][0]) ? ops[0][0] : ops[1][0];
    rewriter.set_insertion_point(first);
    // Built from the op's registered info: DRR's op factory (CreateOperationByName) knows no in-place custom op.
    pir::IrContext* context = pir::IrContext::Instance();
    const pir::OpInfo info = context->GetRegisteredOpInfo("custom_op.paddlellm_rotary_embedding_");
    if (!info) return false;
    pir::Operation* rotary = rewriter.Insert(pir::Operation::Create(
        {x[0], x[1], positions, inv_freq}, {{"interleaved", pir::BoolAttribute::get(context, false)}},
        {x[0].type(), x[1].type()}, info));
    for (int i = 0; i < 2; ++i) rewriter.ReplaceAllUsesWith(ops[i][0]->result(0), rotary->result(i));
    for (int i = 0; i < 2; ++i)
      for (pir::Operation* op : ops[i]) erase_with_constants(op, rewriter);
    for (pir::Operation* op : {cos[0], sin[0], head_unsqueeze, tile, times, unsqueeze, cast})
      erase_with_constants(op, rewriter);
    return true;
  }
};

// sum = a + b (same shapes, float32); out = paddlellm_rms_norm(sum, w)  ->  (out, sum) =
// paddlellm_fused_add_rms_norm(a, b, w): the residual add and the norm after it in one pass over the row. sum
// (the residual stream) is used further on, which DRR's source patterns do not allow, hence a plain pattern.
class AddRmsNormRewrite : public pir::RewritePattern {
 public:
  explicit AddRmsNormRewrite(pir::IrContext* context) : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context) {}

  bool MatchAndRewrite(pir::Operation* norm, pir::PatternRewriter& rewriter) const override {
    if (norm->name() != "custom_op.paddlellm_rms_norm") return false;
    pir::Operation* add = norm->operand_source(0).defining_op();
    if (add == nullptr || add->name() != "pd_op.add") return false;
    const pir::Value a = add->operand_source(0), b = add->operand_source(1);
    if (!is_float32(a) || !is_float32(b) || pir::GetShapeFromValue(a) != pir::GetShapeFromValue(b)) return false;
    // The fused op goes where the norm was, after its weight (a narrow one is cast just before the norm): the
    // sum must then have no other use before it.
    if (!used_only_after(add->result(0), norm)) return false;
    rewriter.set_insertion_point(norm);
    pir::Operation* fused = pir::CreateOperationByName("custom_op.paddlellm_fused_add_rms_norm",
                                                       {a, b, norm->operand_source(1)},
                                                       {{"epsilon", norm->attribute("epsilon")}}, rewriter);
    rewriter.ReplaceAllUsesWith(norm->result(0), fused->result(0));
    rewriter.ReplaceAllUsesWith(add->result(0), fused->result(1));
    erase_with_constants(norm, rewriter);
    erase_with_constants(add, rewriter);
    return true;
  }
};

// Paddle's swiglu with one input (x [..., 2F] float32) -> paddlellm_swiglu(x).
class SwigluPattern : public paddle::drr::DrrPatternBase {
 public:
  std::string name() const override { return "PaddlellmSwigluPattern"; }

  void operator()(paddle::drr::DrrPatternContext* ctx) const override {
    paddle::drr::SourcePattern pat = ctx->SourcePattern();
    const auto& swiglu = pat.Op("pd_op.swiglu");
    swiglu({&pat.Tensor("x"), &pat.InputNoneTensor()}, {&pat.Tensor("out")});
    pat.AddConstraint([](const MatchContext& m) { return is_float32(m.Tensor("x")); });
    paddle::drr::ResultPattern res = pat.ResultPattern();
    const auto& ours = res.Op("custom_op.paddlellm_swiglu");
    ours({&res.Tensor("x")}, {&res.Tensor("out")});
  }
};

class RmsNormPass : public OnePatternPass<RmsNormPattern> {
 public:
  RmsNormPass() : OnePatternPass("paddlellm_rms_norm_pass") {}
};

class RemoveResidualInRmsNormPass : public OnePatternPass<AddRmsNormRewrite> {
 public:
  RemoveResidualInRmsNormPass() : OnePatternPass("remove_residual_in_rms_norm") {}
};

class RotaryPass : public OnePatternPass<RotaryRewrite> {
 public:
  RotaryPass() : OnePatternPass("paddlellm_rotary_pass") {}
};

class SwigluPass : public OnePatternPass<SwigluPattern> {
 public:
  SwigluPass() : OnePatternPass("paddlellm_swiglu_pass") {}
};

}  // namespace

// Matches of pass `name` in its last run in this process, or -1 if it has not run (ctypes: paddlellm.ops.passes).
extern "C" int64_t paddlellm_pass_matches(const char* name) {
  using namespace paddlellm_passes;  // NOLINT
  std::lock_guard<std::mutex> lock(matches_mutex);
  const auto it = last_matches.find(name);
  return it == last_matches.end() ? -1 : it->second;
}

extern "C" void paddlellm_forget_pass_matches() {
  using namespace paddlellm_passes;  // NOLINT
  std::lock_guard<std::mutex> lock(matches_mutex);
  last_matches.clear();
}

REGISTER_IR_PASS(paddlellm_rms_norm_pass, RmsNormPass);
REGISTER_IR_PASS(remove_residual_in_rms_norm, RemoveResidualInRmsNormPass);
REGISTER_IR_PASS(paddlellm_rotary_pass, RotaryPass);
REGISTER_IR_PASS(paddlellm_swiglu_pass, SwigluPass);
