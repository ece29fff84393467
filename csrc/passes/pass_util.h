// What the IR passes share (csrc/passes/*.cc): reading the program's ops, and one pass per pattern that records
// how often it matched.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "paddle/extension.h"
#include "paddle/fluid/pir/utils/general_functions.h"
#include "paddle/pir/include/core/builtin_attribute.h"
#include "paddle/pir/include/core/builtin_type.h"

namespace paddlellm_passes {

inline bool is_float32(const pir::Value& v) { return pir::GetDataTypeFromValue(v).isa<pir::Float32Type>(); }

// Whether no op of `op`'s block before `op` uses `value` (the ops after it may).
inline bool used_only_after(const pir::Value& value, pir::Operation* op) {
  std::unordered_set<const pir::Operation*> before;
  for (auto& other : *op->GetParent()) {
    if (&other == op) break;
    before.insert(&other);
  }
  for (auto use = value.use_begin(); use != value.use_end(); ++use)
    if (before.count(use->owner())) return false;
  return true;
}

// Whether op a comes before op b in their block.
inline bool comes_before(pir::Operation* a, pir::Operation* b) {
  for (auto& op : *a->GetParent()) {
    if (&op == a) return true;
    if (&op == b) return false;
  }
  return false;
}

// The defining op of `v` if it is named `name`, else null.
inline pir::Operation* defined_by(const pir::Value& v, const char* name) {
  pir::Operation* op = v ? v.defining_op() : nullptr;
  return op != nullptr && op->name() == name ? op : nullptr;
}

inline double full_value(const pir::Value& v) {
  pir::Operation* full = defined_by(v, "pd_op.full");
  return full ? full->attribute<pir::DoubleAttribute>("value").data() : 0.0;
}

// Erases `op`, then the constants (pd_op.full, pd_op.full_int_array: axes, shapes, scales) only it read, which
// would otherwise stay in the rewritten (and cached) program.
inline void erase_with_constants(pir::Operation* op, pir::PatternRewriter& rewriter) {
  std::vector<pir::Operation*> constants;
  for (uint32_t i = 0; i < op->num_operands(); ++i) {
    pir::Operation* source = op->operand_source(i) ? op->operand_source(i).defining_op() : nullptr;
    if (source && (source->name() == "pd_op.full" || source->name() == "pd_op.full_int_array") &&
        std::find(constants.begin(), constants.end(), source) == constants.end())
      constants.push_back(source);
  }
  rewriter.EraseOp(op);
  for (pir::Operation* constant : constants)
    if (constant->result(0).use_empty()) rewriter.EraseOp(constant);
}

// Records a pass's matches for paddlellm_pass_matches (layer_passes.cc): read from the pass itself, so the
// predictor's log does not depend on Paddle's logging being on.
void record_matches(const std::string& pass, int64_t matches);

// One pass per pattern: each is listed, logged and counted on its own (paddlellm/ops/passes.py). A pattern that
// rewrites the weights (in the predictor's parameter scope) is built with the pass, to find the scope.
template <class Pattern>
class OnePatternPass : public pir::PatternRewritePass {
 public:
  explicit OnePatternPass(const char* name) : pir::PatternRewritePass(name, 2) {}

 protected:
  void Run(pir::Operation* op) override {
    pir::PatternRewritePass::Run(op);  // records its rewrites as the attribute __match_count__
    record_matches(name(), Has("__match_count__") ? Get<int64_t>("__match_count__") : 0);
  }

  pir::RewritePatternSet InitializePatterns(pir::IrContext* context) override {
    pir::RewritePatternSet patterns(context);
    if constexpr (std::is_base_of_v<paddle::drr::DrrPatternBase, Pattern>)
      patterns.Add(paddle::drr::Create<Pattern>(context));
    else if constexpr (std::is_constructible_v<Pattern, pir::IrContext*, pir::Pass*>)
      patterns.Add(std::make_unique<Pattern>(context, this));
    else
      patterns.Add(std::make_unique<Pattern>(context));
    return patterns;
  }
};

}  // namespace paddlellm_passes
