// IR passes that make the portable program the CPU's own (paddlellm/ops/passes.py lists them): projections and
// the lm_head over weights packed for paddlellm_linear / paddlellm_linear_swiglu, a tied embedding looked up in
// the packed lm_head, the step's end (last rows, final norm, lm_head) and the packed batch's positions each in one
// op, and each decoder layer as one paddlellm_fused_decoder_layer. The weights are repacked here,
// once, in the predictor's parameter scope; Paddle's optimized-model cache (paddlellm/predictor/ir_passes.py)
// then keeps them packed.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "pass_util.h"
#include "packed_weights.h"
#include "paddle/fluid/pir/dialect/operator/ir/op_attribute.h"
#include "paddle/phi/core/dense_tensor.h"
#include "paddle/pir/include/core/builtin_op.h"

namespace {

using namespace paddlellm_passes;  // NOLINT

bool fetched(const pir::Value& v) {
  for (auto use = v.use_begin(); use != v.use_end(); ++use)
    if (use->owner()->name() == "pd_op.fetch" || use->owner()->name() == "builtin.shadow_output") return true;
  return false;
}

// x @ W, x float32 [..., K], W from a parameter [K, N] (see weight_parameter); a8w8: x quantized per token in front
// of an int8 weight with column scales, x then the unquantized input (the kernel quantizes it).
struct Projection {
  pir::Value x, param, scale, offset;
  std::vector<pir::Operation*> feeding;
  int64_t n = 0;
  bool a8w8 = false;
};

bool match_projection(pir::Operation* matmul, Projection* p) {
  if (matmul->name() != "pd_op.matmul" || matmul->attribute<pir::BoolAttribute>("transpose_x").data() ||
      matmul->attribute<pir::BoolAttribute>("transpose_y").data())
    return false;
  p->x = matmul->operand_source(0);
  Weight weight;
  if (!is_float32(p->x) || !weight_parameter(matmul->operand_source(1), &weight)) return false;
  p->param = weight.param;
  p->scale = weight.scale;
  p->offset = weight.offset;
  p->feeding = weight.feeding;
  if (p->scale && !p->offset) {
    const pir::Value unquantized = per_token_input(p->x, &p->feeding);
    p->a8w8 = static_cast<bool>(unquantized);
    if (p->a8w8) p->x = unquantized;
  }
  const auto shape = pir::GetShapeFromValue(p->param);
  p->n = shape[1];
  return pir::GetShapeFromValue(p->x).back() == shape[0];
}

pir::AttributeMap n_attribute(int64_t n) { return {{"n", pir::Int64Attribute::get(pir::IrContext::Instance(), n)}}; }

// Replaces `op` (one result) by `replacement`, and erases what fed the weight (cast, scales).
void replace_projection(pir::Operation* op, pir::Operation* replacement, const Projection& p,
                        pir::PatternRewriter& rewriter) {
  rewriter.ReplaceAllUsesWith(op->result(0), replacement->result(0));
  erase_with_constants(op, rewriter);
  for (pir::Operation* feeding : p.feeding) erase_with_constants(feeding, rewriter);
}

// A projection inside the layers, x @ W -> paddlellm_linear(x, W packed). The lm_head (its product is fetched) is
// llama_fuse_lm_head's.
class LinearRewrite : public pir::RewritePattern {
 public:
  LinearRewrite(pir::IrContext* context, pir::Pass* pass)
      : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context), pass_(pass) {}

  bool MatchAndRewrite(pir::Operation* matmul, pir::PatternRewriter& rewriter) const override {
    Projection p;
    if (!match_projection(matmul, &p) || fetched(matmul->result(0)) ||
        !pack_weight(pass_, p.param, false, p.scale, p.offset, p.a8w8))
      return false;
    rewriter.set_insertion_point(matmul);
    replace_projection(matmul,
                       pir::CreateOperationByName("custom_op.paddlellm_linear", {p.x, p.param}, n_attribute(p.n),
                                                  rewriter),
                       p, rewriter);
    return true;
  }

 private:
  pir::Pass* pass_;
};

// swiglu(x @ W), W [K, 2F] gate then up columns -> paddlellm_linear_swiglu(x, W packed gate/up interleaved): the
// gate and up products never leave the cache.
class LinearSwigluRewrite : public pir::RewritePattern {
 public:
  LinearSwigluRewrite(pir::IrContext* context, pir::Pass* pass)
      : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context), pass_(pass) {}

  bool MatchAndRewrite(pir::Operation* swiglu, pir::PatternRewriter& rewriter) const override {
    const bool ours = swiglu->name() == "custom_op.paddlellm_swiglu";
    if (!ours && !(swiglu->name() == "pd_op.swiglu" && !swiglu->operand_source(1))) return false;
    pir::Operation* matmul = defined_by(swiglu->operand_source(0), "pd_op.matmul");
    Projection p;
    if (matmul == nullptr || !matmul->result(0).HasOneUse() || !match_projection(matmul, &p) || p.n % 2 != 0 ||
        !pack_weight(pass_, p.param, true, p.scale, p.offset, p.a8w8))
      return false;
    rewriter.set_insertion_point(swiglu);
    pir::Operation* fused = pir::CreateOperationByName("custom_op.paddlellm_linear_swiglu", {p.x, p.param},
                                                       n_attribute(p.n / 2), rewriter);
    rewriter.ReplaceAllUsesWith(swiglu->result(0), fused->result(0));
    erase_with_constants(swiglu, rewriter);
    replace_projection(matmul, fused, p, rewriter);
    return true;
  }

 private:
  pir::Pass* pass_;
};

// Whether the embedding table `embedding` [V, H] is the transpose of the lm_head `lm_head` [H, V], value for value
// (a tied model's export keeps both).
bool tied(pir::Pass* pass, const pir::Value& embedding, const pir::Value& lm_head) {
  const phi::DenseTensor* e = scope_tensor(pass, embedding);
  const phi::DenseTensor* w = scope_tensor(pass, lm_head);
  if (e == nullptr || w == nullptr || e->dtype() != w->dtype() || e->dims().size() != 2 || w->dims().size() != 2 ||
      e->dims()[0] != w->dims()[1] || e->dims()[1] != w->dims()[0])
    return false;
  const int64_t V = e->dims()[0], H = e->dims()[1];
  const size_t size = phi::SizeOf(e->dtype());
  const char* ev = static_cast<const char*>(e->data());
  const char* wv = static_cast<const char*>(w->data());
  for (int64_t v = 0; v < V; ++v)
    for (int64_t h = 0; h < H; ++h)
      if (std::memcmp(ev + (v * H + h) * size, wv + (h * V + v) * size, size) != 0) return false;
  return true;
}

// The lm_head, last_hidden @ W whose product is fetched -> paddlellm_linear(x, W packed); a tied embedding
// (embedding(ids, E), E == W^T in value) is then looked up in the packed lm_head (paddlellm_packed_embedding) and
// its own copy dropped: one copy of the table, not two.
class LmHeadRewrite : public pir::RewritePattern {
 public:
  LmHeadRewrite(pir::IrContext* context, pir::Pass* pass)
      : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context), pass_(pass) {}

  bool MatchAndRewrite(pir::Operation* matmul, pir::PatternRewriter& rewriter) const override {
    Projection p;
    if (!match_projection(matmul, &p) || !fetched(matmul->result(0))) return false;
    pir::Operation* lookup = tied_embedding(matmul->GetParent(), p.param);
    if (!pack_weight(pass_, p.param, false, p.scale, p.offset, p.a8w8)) return false;
    rewriter.set_insertion_point(matmul);
    replace_projection(matmul,
                       pir::CreateOperationByName("custom_op.paddlellm_linear", {p.x, p.param}, n_attribute(p.n),
                                                  rewriter),
                       p, rewriter);
    if (lookup != nullptr) {
      // embedding(ids, E), then a cast to float32 where E is narrow
      pir::Value looked_up = lookup->result(0);
      pir::Operation* cast = looked_up.HasOneUse() && looked_up.use_begin()->owner()->name() == "pd_op.cast"
                                 ? looked_up.use_begin()->owner()
                                 : nullptr;
      pir::Operation* table = lookup->operand_source(1).defining_op();
      rewriter.set_insertion_point(lookup);
      pir::Operation* packed = pir::CreateOperationByName(
          "custom_op.paddlellm_packed_embedding", {lookup->operand_source(0), p.param}, n_attribute(p.n), rewriter);
      rewriter.ReplaceAllUsesWith((cast ? cast : lookup)->result(0), packed->result(0));
      if (cast) erase_with_constants(cast, rewriter);
      erase_with_constants(lookup, rewriter);
      erase_with_constants(table, rewriter);
    }
    return true;
  }

 private:
  // The embedding lookup whose table is the lm_head's tied twin, if there is one (before the lm_head is packed).
  pir::Operation* tied_embedding(pir::Block* block, const pir::Value& lm_head) const {
    for (auto& op : *block) {
      if (op.name() != "pd_op.embedding") continue;
      const pir::Value table = op.operand_source(1);
      pir::Operation* table_op = table.defining_op();
      const pir::Value looked_up = op.result(0);
      const bool float32_out = is_float32(looked_up) ||
                               (looked_up.HasOneUse() && looked_up.use_begin()->owner()->name() == "pd_op.cast" &&
                                is_float32(looked_up.use_begin()->owner()->result(0)));
      if (table_op != nullptr && table_op->isa<pir::ParameterOp>() && table.HasOneUse() && float32_out &&
          comes_before(lm_head.defining_op(), &op) && tied(pass_, table, lm_head))
        return &op;
    }
    return nullptr;
  }

  pir::Pass* pass_;
};

// The step's end after llama_fuse_lm_head: gather(a, rows), gather(b, rows) (each sequence's last row of the
// residual stream a + b), x = fused_add_rms_norm(...), logits = paddlellm_linear(x, lm_head), fetched
// -> paddlellm_final_logits(a, b, rows, norm_weight, lm_head): one op, no [S, H] copies between ops.
class FinalLogitsRewrite : public pir::RewritePattern {
 public:
  explicit FinalLogitsRewrite(pir::IrContext* context) : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context) {}

  bool MatchAndRewrite(pir::Operation* lm_head, pir::PatternRewriter& rewriter) const override {
    if (lm_head->name() != "custom_op.paddlellm_linear" || !fetched(lm_head->result(0))) return false;
    pir::Operation* norm = defined_by(lm_head->operand_source(0), "custom_op.paddlellm_fused_add_rms_norm");
    if (!norm || !norm->result(0).HasOneUse() || !norm->result(1).use_empty()) return false;
    pir::Operation* gathers[2];
    for (int i = 0; i < 2; ++i) {
      gathers[i] = defined_by(norm->operand_source(i), "pd_op.gather");
      if (!gathers[i] || !gathers[i]->result(0).HasOneUse() || full_value(gathers[i]->operand_source(2)) != 0.0)
        return false;
    }
    const pir::Value rows = gathers[0]->operand_source(1);
    if (gathers[1]->operand_source(1) != rows || !pir::GetDataTypeFromValue(rows).isa<pir::Int32Type>()) return false;
    rewriter.set_insertion_point(lm_head);
    pir::Operation* logits = pir::CreateOperationByName(
        "custom_op.paddlellm_final_logits",
        {gathers[1]->operand_source(0), gathers[0]->operand_source(0), rows, norm->operand_source(2),
         lm_head->operand_source(1)},
        {{"epsilon", norm->attribute("epsilon")}, {"n", lm_head->attribute("n")}}, rewriter);
    rewriter.ReplaceAllUsesWith(lm_head->result(0), logits->result(0));
    for (pir::Operation* op : {lm_head, norm, gathers[0], gathers[1]}) erase_with_constants(op, rewriter);
    return true;
  }
};

bool erase_if_unused(pir::Operation* op, pir::PatternRewriter& rewriter) {
  for (uint32_t i = 0; i < op->num_results(); ++i)
    if (!op->result(i).use_empty()) return false;
  erase_with_constants(op, rewriter);
  return true;
}

// model.packed_positions, the step's plain computation of where each packed row sits:
//   ends = cumsum(lengths) (1-D: any axis); last_rows = ends - 1 (a scale with bias -1);
//   positions = arange(0, len(ids), 1) + repeat_interleave(cached - (ends - lengths), lengths)
// -> positions, last_rows = paddlellm_packed_positions(ids, lengths, cached). Rooted at the repeat_interleave.
class PackedPositionsRewrite : public pir::RewritePattern {
 public:
  explicit PackedPositionsRewrite(pir::IrContext* context) : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context) {}

  bool MatchAndRewrite(pir::Operation* repeat, pir::PatternRewriter& rewriter) const override {
    if (repeat->name() != "pd_op.repeat_interleave_with_tensor_index") return false;
    const pir::Value lengths = repeat->operand_source(1);
    pir::Operation* first = defined_by(repeat->operand_source(0), "pd_op.subtract");
    pir::Operation* starts = first ? defined_by(first->operand_source(1), "pd_op.subtract") : nullptr;
    pir::Operation* ends = starts ? defined_by(starts->operand_source(0), "pd_op.cumsum") : nullptr;
    if (!ends || starts->operand_source(1) != lengths || ends->operand_source(0) != lengths ||
        pir::GetShapeFromValue(lengths).size() != 1 || ends->attribute<pir::BoolAttribute>("exclusive").data() ||
        ends->attribute<pir::BoolAttribute>("reverse").data())
      return false;
    const pir::Value cached = first->operand_source(0);
    pir::Operation* add = repeat->result(0).HasOneUse() ? repeat->result(0).use_begin()->owner() : nullptr;
    pir::Operation* arange = add && add->name() == "pd_op.add" ? defined_by(add->operand_source(0), "pd_op.arange")
                                                                : nullptr;
    if (!arange || add->operand_source(1) != repeat->result(0) || full_value(arange->operand_source(0)) != 0.0 ||
        full_value(arange->operand_source(2)) != 1.0)
      return false;
    pir::Operation* count = defined_by(arange->operand_source(1), "pd_op.cast");
    pir::Operation* slice = count ? defined_by(count->operand_source(0), "pd_op.slice") : nullptr;
    pir::Operation* shape = slice ? defined_by(slice->operand_source(0), "pd_op.shape64") : nullptr;
    if (!shape) return false;
    pir::Operation* last = nullptr;  // ends - 1; the cumsum has no other use
    for (auto use = ends->result(0).use_begin(); use != ends->result(0).use_end(); ++use) {
      pir::Operation* user = use->owner();
      if (user == starts) continue;
      if (last || user->name() != "pd_op.scale" || full_value(user->operand_source(1)) != 1.0 ||
          user->attribute<pir::FloatAttribute>("bias").data() != -1.f ||
          !user->attribute<pir::BoolAttribute>("bias_after_scale").data())
        return false;
      last = user;
    }
    const pir::Value ids = shape->operand_source(0);
    if (!last || pir::GetShapeFromValue(ids).size() != 1 || !pir::GetDataTypeFromValue(lengths).isa<pir::Int32Type>() ||
        !pir::GetDataTypeFromValue(cached).isa<pir::Int32Type>())
      return false;
    rewriter.set_insertion_point(add);
    pir::Operation* positions =
        pir::CreateOperationByName("custom_op.paddlellm_packed_positions", {ids, lengths, cached}, {}, rewriter);
    rewriter.ReplaceAllUsesWith(add->result(0), positions->result(0));
    rewriter.ReplaceAllUsesWith(last->result(0), positions->result(1));
    for (pir::Operation* op : {add, arange, repeat, first, last, starts, ends, count, slice, shape})
      erase_if_unused(op, rewriter);
    return true;
  }
};

// zeros_like(x) for float32 x, as Paddle writes it: full_like(x, full([1], 0)) (built from the ops' registered
// info: DRR's op factory knows neither).
pir::Value zeros_like(const pir::Value& x, pir::PatternRewriter& rewriter) {
  pir::IrContext* context = pir::IrContext::Instance();
  const pir::OpInfo full = context->GetRegisteredOpInfo("pd_op.full");
  const pir::OpInfo full_like = context->GetRegisteredOpInfo("pd_op.full_like");
  if (!full || !full_like) return pir::Value();
  const auto float32 = paddle::dialect::DataTypeAttribute::get(context, phi::DataType::FLOAT32);
  const auto place = paddle::dialect::PlaceAttribute::get(context, phi::Place());
  const auto old = x.type().dyn_cast<pir::DenseTensorType>();
  const auto scalar = pir::DenseTensorType::get(context, old.dtype(), common::make_ddim({1}), old.data_layout(),
                                                old.lod(), old.offset());
  pir::Operation* zero = rewriter.Insert(pir::Operation::Create(
      {},
      {{"shape", paddle::dialect::IntArrayAttribute::get(context, phi::IntArray(std::vector<int64_t>{1}))},
       {"value", pir::DoubleAttribute::get(context, 0.0)}, {"dtype", float32}, {"place", place}},
      {scalar}, full));
  return rewriter
      .Insert(pir::Operation::Create({x, zero->result(0)}, {{"dtype", float32}, {"place", place}}, {x.type()},
                                     full_like))
      ->result(0);
}

// Where a decoder layer sits: the first (its input is the embedding: no residual add before its norm), the last
// (the final norm's row gathers, or paddlellm_final_logits, read its output), or one between.
enum class LayerKind { kBegin, kMiddle, kEnd };

// The single user of `v`, if it is named `name`.
pir::Operation* only_user(const pir::Value& v, const char* name) {
  if (!v || !v.HasOneUse()) return nullptr;
  pir::Operation* user = v.use_begin()->owner();
  return user->name() == name ? user : nullptr;
}

bool read_by(const pir::Value& v, const char* name) {
  for (auto use = v.use_begin(); use != v.use_end(); ++use)
    if (use->owner()->name() == name) return true;
  return false;
}

// A static int8 cache's key (7) or value (8) scales the write reads, or none (the null value of an absent input).
pir::Value static_scale(pir::Operation* write, uint32_t index) {
  return index < write->num_operands() ? write->operand_source(index) : pir::Value();
}

// A decoder layer of the CPU pipeline's program (after the norm, rotary, SwiGLU and projection passes), rooted at
// its paged-cache write:
//   x, h1 = fused_add_rms_norm(h, delta, input_norm)     (the first layer: x = rms_norm(h, input_norm), h1 = h)
//   q, k, v = split(reshape(linear(x, qkv_proj)));  q, k = rotary_embedding_(q, k, positions, inv_freq)
//   caches = write_cache_kv_(k, v, caches, ...);  attn = block_attention(q, caches, ...)
//   x2, h2 = fused_add_rms_norm(h1, linear(reshape(attn), o_proj), post_attention_norm)
//   delta2 = linear(linear_swiglu(x2, gate_up_proj), down_proj)
// -> h2, delta2, caches = paddlellm_fused_decoder_layer_(h, delta (zeros for the first), ...), in place.
class DecoderLayerRewrite : public pir::RewritePattern {
 public:
  DecoderLayerRewrite(pir::IrContext* context, LayerKind kind)
      : pir::RewritePattern(MatchAnyOpTypeTag(), 1, context), kind_(kind) {}

  bool MatchAndRewrite(pir::Operation* write, pir::PatternRewriter& rewriter) const override {
    if (write->name() != "custom_op.paddlellm_write_cache_kv_") return false;
    pir::Operation* rotary = defined_by(write->operand_source(0), "custom_op.paddlellm_rotary_embedding_");
    if (!rotary || write->operand_source(0) != rotary->result(1) ||
        rotary->attribute<pir::BoolAttribute>("interleaved").data())
      return false;
    pir::Operation* heads = defined_by(rotary->operand_source(0), "builtin.split");
    if (!heads || heads->num_results() != 3 || rotary->operand_source(0) != heads->result(0) ||
        rotary->operand_source(1) != heads->result(1) || write->operand_source(1) != heads->result(2))
      return false;
    pir::Operation* split = defined_by(heads->operand_source(0), "pd_op.split");
    pir::Operation* reshape = split ? defined_by(split->operand_source(0), "pd_op.reshape") : nullptr;
    pir::Operation* qkv = reshape ? defined_by(reshape->operand_source(0), "custom_op.paddlellm_linear") : nullptr;
    if (!qkv) return false;
    pir::Operation* input_norm = qkv->operand_source(0).defining_op();
    const bool first = input_norm && input_norm->name() == "custom_op.paddlellm_rms_norm";
    if (!input_norm || (!first && input_norm->name() != "custom_op.paddlellm_fused_add_rms_norm") ||
        qkv->operand_source(0) != input_norm->result(0) || first != (kind_ == LayerKind::kBegin))
      return false;
    const pir::Value h = input_norm->operand_source(0), delta = first ? pir::Value() : input_norm->operand_source(1);
    const pir::Value h1 = first ? h : input_norm->result(1);

    pir::Operation* attention = only_user(rotary->result(0), "custom_op.paddlellm_block_attention");
    if (!attention || attention->operand_source(1) != write->result(0) ||
        attention->operand_source(2) != write->result(1) || !write->result(0).HasOneUse() ||
        !write->result(1).HasOneUse())
      return false;
    for (int i = 3; i < 6; ++i)
      if (attention->operand_source(i) != write->operand_source(i + 1)) return false;
    pir::Operation* merge = only_user(attention->result(0), "pd_op.reshape");
    pir::Operation* o_proj = merge ? only_user(merge->result(0), "custom_op.paddlellm_linear") : nullptr;
    pir::Operation* post_norm =
        o_proj ? only_user(o_proj->result(0), "custom_op.paddlellm_fused_add_rms_norm") : nullptr;
    if (!post_norm) return false;
    const bool h1_first = post_norm->operand_source(0) == h1;
    if (post_norm->operand_source(h1_first ? 0 : 1) != h1) return false;
    pir::Operation* gate_up = only_user(post_norm->result(0), "custom_op.paddlellm_linear_swiglu");
    pir::Operation* down = gate_up ? only_user(gate_up->result(0), "custom_op.paddlellm_linear") : nullptr;
    if (!down) return false;
    const pir::Value h2 = post_norm->result(1), delta2 = down->result(0);
    const bool last = read_by(h2, "pd_op.gather") || read_by(h2, "custom_op.paddlellm_final_logits");
    if ((kind_ == LayerKind::kEnd) != (!first && last)) return false;
    // The layer's inner values stay inside it; the fused op updates h and delta in place, so nothing else reads them.
    const bool contained = qkv->result(0).HasOneUse() && reshape->result(0).HasOneUse() &&
                           split->result(0).HasOneUse() && heads->result(2).HasOneUse() &&
                           input_norm->result(0).HasOneUse() && (first ? h.use_count() == 2 : h1.HasOneUse()) &&
                           (first || (h.HasOneUse() && delta.HasOneUse()));
    if (!contained || !is_float32(h) || (delta && !is_float32(delta))) return false;

    pir::IrContext* context = pir::IrContext::Instance();
    const pir::OpInfo info = context->GetRegisteredOpInfo("custom_op.paddlellm_fused_decoder_layer_");
    if (!info) return false;
    rewriter.set_insertion_point(down);
    const pir::Value residual = first ? zeros_like(h, rewriter) : delta;
    if (!residual) return false;
    const int64_t num_heads = pir::GetShapeFromValue(rotary->operand_source(0))[1];
    pir::AttributeMap attributes = {
        {"epsilon", input_norm->attribute("epsilon")},
        {"num_heads", pir::Int64Attribute::get(context, num_heads)},
        {"intermediate_size", gate_up->attribute("n")}};
    pir::Operation* layer = rewriter.Insert(pir::Operation::Create(
        {h, residual, rotary->operand_source(2), rotary->operand_source(3), write->operand_source(2),
         write->operand_source(3), write->operand_source(4), write->operand_source(5), write->operand_source(6),
         input_norm->operand_source(first ? 1 : 2), qkv->operand_source(1), o_proj->operand_source(1),
         post_norm->operand_source(2), gate_up->operand_source(1), down->operand_source(1), static_scale(write, 7),
         static_scale(write, 8)},
        attributes, {h.type(), residual.type(), write->result(0).type(), write->result(1).type()}, info));
    rewriter.ReplaceAllUsesWith(h2, layer->result(0));
    rewriter.ReplaceAllUsesWith(delta2, layer->result(1));
    for (pir::Operation* op : {down, gate_up, post_norm, o_proj, merge, attention, write, rotary, heads, split, reshape,
                               qkv, input_norm})
      erase_with_constants(op, rewriter);
    return true;
  }

 private:
  LayerKind kind_;
};

class LayerBeginRewrite : public DecoderLayerRewrite {
 public:
  explicit LayerBeginRewrite(pir::IrContext* context) : DecoderLayerRewrite(context, LayerKind::kBegin) {}
};

class LayerMiddleRewrite : public DecoderLayerRewrite {
 public:
  explicit LayerMiddleRewrite(pir::IrContext* context) : DecoderLayerRewrite(context, LayerKind::kMiddle) {}
};

class LayerEndRewrite : public DecoderLayerRewrite {
 public:
  explicit LayerEndRewrite(pir::IrContext* context) : DecoderLayerRewrite(context, LayerKind::kEnd) {}
};

class LinearPass : public OnePatternPass<LinearRewrite> {
 public:
  LinearPass() : OnePatternPass("paddlellm_linear_pass") {}
};

class LinearSwigluPass : public OnePatternPass<LinearSwigluRewrite> {
 public:
  LinearSwigluPass() : OnePatternPass("paddlellm_linear_swiglu_pass") {}
};

class LmHeadPass : public OnePatternPass<LmHeadRewrite> {
 public:
  LmHeadPass() : OnePatternPass("llama_fuse_lm_head") {}
};

class FinalLogitsPass : public OnePatternPass<FinalLogitsRewrite> {
 public:
  FinalLogitsPass() : OnePatternPass("llama_fuse_lm_head_with_slice") {}
};

class PackedPositionsPass : public OnePatternPass<PackedPositionsRewrite> {
 public:
  PackedPositionsPass() : OnePatternPass("llama_fuse_get_padding_offset") {}
};

class LayerBeginPass : public OnePatternPass<LayerBeginRewrite> {
 public:
  LayerBeginPass() : OnePatternPass("llama_fuse_attention_layer_begin") {}
};

class LayerPass : public OnePatternPass<LayerMiddleRewrite> {
 public:
  LayerPass() : OnePatternPass("llama_fuse_attention_layer") {}
};

class LayerEndPass : public OnePatternPass<LayerEndRewrite> {
 public:
  LayerEndPass() : OnePatternPass("llama_fuse_attention_layer_end") {}
};

}  // namespace

REGISTER_IR_PASS(paddlellm_linear_swiglu_pass, LinearSwigluPass);
REGISTER_IR_PASS(paddlellm_linear_pass, LinearPass);
REGISTER_IR_PASS(llama_fuse_lm_head, LmHeadPass);
REGISTER_IR_PASS(llama_fuse_lm_head_with_slice, FinalLogitsPass);
REGISTER_IR_PASS(llama_fuse_get_padding_offset, PackedPositionsPass);
REGISTER_IR_PASS(llama_fuse_attention_layer_begin, LayerBeginPass);
REGISTER_IR_PASS(llama_fuse_attention_layer, LayerPass);
REGISTER_IR_PASS(llama_fuse_attention_layer_end, LayerEndPass);
