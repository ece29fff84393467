// The CPU passes' weights: see packed_weights.h.
#include "packed_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "paddle/pir/include/core/builtin_op.h"

namespace paddlellm_passes {
namespace {

constexpr int64_t kBlock = 32;  // the packed layout's column block (csrc/cpu/linear_kernel.h, kLinearBlock)
constexpr int64_t kScaleRows = 4;  // an int8 block's rows of scales (kScaleRows there)

void set_type(pir::Value value, const std::vector<int64_t>& shape, pir::Type dtype) {
  const auto old = value.type().dyn_cast<pir::DenseTensorType>();
  value.set_type(pir::DenseTensorType::get(pir::IrContext::Instance(), dtype, common::make_ddim(shape),
                                           old.data_layout(), old.lod(), old.offset()));
}

bool parameter(const pir::Value& v) {
  pir::Operation* op = v ? v.defining_op() : nullptr;
  return op != nullptr && op->isa<pir::ParameterOp>() && v.HasOneUse();
}

// `v` = repeat_interleave(S, repeats, axis 0) of a float32 parameter S [G, N] read by nothing else: S, and the
// op (appended to `feeding`). Else a null value.
pir::Value repeated_parameter(const pir::Value& v, int64_t rows, std::vector<pir::Operation*>* feeding) {
  pir::Operation* repeat = defined_by(v, "pd_op.repeat_interleave");
  if (!repeat || !v.HasOneUse() || repeat->attribute<pir::Int32Attribute>("axis").data() != 0) return pir::Value();
  const pir::Value s = repeat->operand_source(0);
  const auto shape = pir::GetShapeFromValue(s);
  if (!parameter(s) || !pir::GetDataTypeFromValue(s).isa<pir::Float32Type>() || shape.size() != 2 ||
      shape[0] * repeat->attribute<pir::Int32Attribute>("repeats").data() != rows)
    return pir::Value();
  feeding->push_back(repeat);
  return s;
}

}  // namespace

phi::DenseTensor* scope_tensor(pir::Pass* pass, const pir::Value& param) {
  auto* scope = pir::GetScopeImpl(pass);
  if (scope == nullptr) return nullptr;
  auto* var = pir::ScopeFindVar(scope, pir::GetParameterNameFromValue(param));
  if (var == nullptr) return nullptr;
  auto* tensor = pir::VarGetMutable<phi::DenseTensor>(var);
  return tensor->initialized() && tensor->place().GetType() == phi::AllocationType::CPU ? tensor : nullptr;
}

// Repacks the [K, N] weight of `param` in place into the layout paddlellm_linear reads (ops.pack_linear_weight):
// [ceil(N / 32), K, 32], block b holding columns 32b.. row after row, zero past N. With `swiglu`, the first half
// of the columns (gate) and the second (up) are packed apart and their blocks interleaved (ops.pack_swiglu_weight).
// float32 and bfloat16 stay as they are; float16, which the CPU kernels do not read, becomes float32 (exactly).
// Quantized weights (int8 values, csrc/cpu/linear_kernel.h; each block its groups in order, each its header then its
// rows): with column scales `scale` [N] float32 (or group scales [G, N], K / G rows a group, a multiple of 32),
// int8 blocks [blocks, 4 G + K, 32], a group's header its 32 scales; with group scales and offsets [G, N] (int4;
// float16 values), uint8 blocks [blocks, 4 G + K / 2, 32]: a group's 32 scales and 32 offsets as float16, then
// octets of rows, a column's 8 rows in 4 bytes; with `a8w8` (column scales, for int8 activations; K a multiple of
// 32), uint8 blocks [blocks, 4 + K, 32]: the 32 scales, then quads of rows, a column's 4 rows in 4 bytes, each
// q + 128.
bool pack_weight(pir::Pass* pass, pir::Value param, bool swiglu, pir::Value scale, pir::Value offset, bool a8w8) {
  phi::DenseTensor* weight = scope_tensor(pass, param);
  if (weight == nullptr || weight->dims().size() != 2) return false;
  const int64_t K = weight->dims()[0], N = weight->dims()[1], halves = swiglu ? 2 : 1;
  if (N % halves != 0) return false;
  const phi::DenseTensor* scales = scale ? scope_tensor(pass, scale) : nullptr;
  const phi::DenseTensor* offsets = offset ? scope_tensor(pass, offset) : nullptr;
  const bool int4 = static_cast<bool>(offset);
  const auto scale_shape = scale ? pir::GetShapeFromValue(scale) : std::vector<int64_t>{};
  const int64_t groups = !scale ? 0 : scale_shape.size() == 2 ? scale_shape[0] : 1;
  if (scale) {  // int8 values; float32 scales (and offsets) of `groups` rows a column
    auto fits = [&](const phi::DenseTensor* t) {
      return t != nullptr && t->dtype() == phi::DataType::FLOAT32 && t->numel() == groups * N;
    };
    if (weight->dtype() != phi::DataType::INT8 || !fits(scales) || (int4 && !fits(offsets)) || K % groups ||
        ((int4 || groups > 1) && (K / groups) % 32))
      return false;
  }
  if (a8w8 && (!scale || int4 || groups != 1 || K % 32 != 0)) return false;
  const bool widen = weight->dtype() == phi::DataType::FLOAT16;
  const phi::DataType dtype = widen ? phi::DataType::FLOAT32 : int4 || a8w8 ? phi::DataType::UINT8 : weight->dtype();
  std::shared_ptr<phi::DenseTensor> wide;
  if (widen) {
    wide = std::static_pointer_cast<phi::DenseTensor>(paddle::empty({K, N}, dtype, paddle::CPUPlace()).impl());
    const auto* narrow = weight->data<phi::dtype::float16>();
    float* out = wide->data<float>();
    for (int64_t i = 0; i < K * N; ++i) out[i] = static_cast<float>(narrow[i]);
  }
  const int64_t n = N / halves, blocks = (n + kBlock - 1) / kBlock;
  const int64_t rows = kScaleRows * groups + (int4 ? K / 2 : K);
  const size_t size = phi::SizeOf(dtype);
  auto packed = std::static_pointer_cast<phi::DenseTensor>(
      paddle::empty({blocks * halves, rows, kBlock}, dtype, paddle::CPUPlace()).impl());
  const char* src = static_cast<const char*>(widen ? wide->data() : weight->data());
  char* dst = static_cast<char*>(packed->data());
  std::memset(dst, 0, packed->numel() * size);
  // a quantized block: its groups in order, each its header (32 scales; int4: float16, and 32 offsets; zero past N)
  // then its rows; a float block: its rows
  const int64_t segments = std::max<int64_t>(groups, 1), group_k = K / segments;
  const int64_t header_bytes = groups ? kScaleRows * kBlock : 0;
  const int64_t segment_bytes = header_bytes + (int4 ? group_k / 2 : group_k) * kBlock * size;
  const auto* q = reinterpret_cast<const int8_t*>(src);
  for (int64_t half = 0; half < halves; ++half)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t columns = std::min(kBlock, n - b * kBlock), c0 = half * n + b * kBlock;
      char* block = dst + (b * halves + half) * rows * kBlock * size;
      for (int64_t g = 0; g < segments; ++g) {
        char* header = block + g * segment_bytes;
        if (int4) {
          auto* halves16 = reinterpret_cast<phi::dtype::float16*>(header);
          for (int64_t c = 0; c < columns; ++c) {
            halves16[c] = phi::dtype::float16(scales->data<float>()[g * N + c0 + c]);
            halves16[kBlock + c] = phi::dtype::float16(offsets->data<float>()[g * N + c0 + c]);
          }
        } else if (groups) {
          std::memcpy(header, scales->data<float>() + g * N + c0, columns * sizeof(float));
        }
        char* values = header + header_bytes;
        const int64_t k0 = g * group_k;
        if (a8w8) {  // quads of rows: column c's 4 bytes, byte j = row 4o + j, + 128
          for (int64_t o = 0; o < group_k / 4; ++o)
            for (int64_t c = 0; c < columns; ++c)
              for (int64_t j = 0; j < 4; ++j)
                values[(o * kBlock + c) * 4 + j] = static_cast<char>(q[(k0 + 4 * o + j) * N + c0 + c] + 128);
        } else if (int4) {  // octets of rows: column c's 4 bytes, byte j = row 8o + j | row 8o + 4 + j << 4
          for (int64_t o = 0; o < group_k / 8; ++o)
            for (int64_t c = 0; c < columns; ++c)
              for (int64_t j = 0; j < 4; ++j)
                values[(o * kBlock + c) * 4 + j] = static_cast<char>(q[(k0 + 8 * o + j) * N + c0 + c] |
                                                                     (q[(k0 + 8 * o + 4 + j) * N + c0 + c] << 4));
        } else {
          for (int64_t k = 0; k < group_k; ++k)
            std::memcpy(values + k * kBlock * size, src + ((k0 + k) * N + c0) * size, columns * size);
        }
      }
    }
  *weight = *packed;
  const pir::Type element = widen ? pir::Float32Type::get(pir::IrContext::Instance())
                            : int4 || a8w8 ? pir::UInt8Type::get(pir::IrContext::Instance())
                                   : pir::GetDataTypeFromValue(param);
  set_type(param, {blocks * halves, rows, kBlock}, element);
  return true;
}

// The weight behind a matmul's weight operand `w` [K, N], its parameter and the ops that only feed it, erased
// once the weight is packed (in place: so only if nothing else reads them):
//   w itself, a float32 parameter;
//   cast(P) to float32, P a bfloat16 or float16 parameter;
//   multiply(cast(P), S), P an int8 parameter, S its float32 column scales [N] (--quant_type weight_only_int8);
//   multiply(cast(P), repeat_interleave(S, K / G, axis 0)), S its group scales [G, N] (grouped weight_only_int8);
//   that + repeat_interleave(O, K / G, axis 0), O its group offsets [G, N] (weight_only_int4).
bool weight_parameter(const pir::Value& w, Weight* weight) {
  if (!w.HasOneUse() || !is_float32(w)) return false;
  pir::Value p = w;
  pir::Operation* add = defined_by(w, "pd_op.add");  // int4: + the group offsets
  pir::Operation* multiply = defined_by(add ? add->operand_source(0) : w, "pd_op.multiply");
  if (add) {
    weight->feeding.push_back(add);
    if (!multiply || !multiply->result(0).HasOneUse()) return false;
  }
  if (multiply) {
    weight->feeding.push_back(multiply);
    p = multiply->operand_source(0);
    if (!p.HasOneUse()) return false;
  }
  pir::Operation* cast = defined_by(p, "pd_op.cast");
  if (cast) {
    weight->feeding.push_back(cast);
    p = cast->operand_source(0);
  }
  if (!parameter(p) || pir::GetShapeFromValue(p).size() != 2) return false;
  const auto dtype = pir::GetDataTypeFromValue(p);
  const auto shape = pir::GetShapeFromValue(p);
  if (add) {  // int4: scales and offsets [G, N], each repeated K / G times
    weight->scale = repeated_parameter(multiply->operand_source(1), shape[0], &weight->feeding);
    weight->offset = repeated_parameter(add->operand_source(1), shape[0], &weight->feeding);
    if (!weight->scale || !weight->offset || pir::GetShapeFromValue(weight->scale)[1] != shape[1] ||
        pir::GetShapeFromValue(weight->offset) != pir::GetShapeFromValue(weight->scale))
      return false;
    weight->feeding.push_back(weight->offset.defining_op());
  } else if (multiply && defined_by(multiply->operand_source(1), "pd_op.repeat_interleave")) {  // int8: [G, N]
    weight->scale = repeated_parameter(multiply->operand_source(1), shape[0], &weight->feeding);
    if (!weight->scale || pir::GetShapeFromValue(weight->scale)[1] != shape[1]) return false;
  } else if (multiply) {  // int8: column scales [N]
    weight->scale = multiply->operand_source(1);
    if (!parameter(weight->scale) || !pir::GetDataTypeFromValue(weight->scale).isa<pir::Float32Type>() ||
        pir::GetShapeFromValue(weight->scale) != std::vector<int64_t>{shape[1]})
      return false;
  }
  if (multiply) {
    if (!cast || !dtype.isa<pir::Int8Type>()) return false;
    weight->feeding.push_back(weight->scale.defining_op());
  } else if (!(dtype.isa<pir::Float32Type>() || dtype.isa<pir::BFloat16Type>() || dtype.isa<pir::Float16Type>())) {
    return false;
  }
  weight->param = p;
  return true;
}

// x = reshape(multiply(round(divide(B, S)), S)) to [tokens, K], B = reshape(X) to [tokens, K / 32, 32], S =
// scale(clip(max(abs(B), axis -1, keepdim))) by 1 / 127.
pir::Value per_token_input(const pir::Value& x, std::vector<pir::Operation*>* feeding) {
  pir::Operation* unblock = defined_by(x, "pd_op.reshape");
  pir::Operation* multiply = unblock ? defined_by(unblock->operand_source(0), "pd_op.multiply") : nullptr;
  pir::Operation* round = multiply ? defined_by(multiply->operand_source(0), "pd_op.round") : nullptr;
  pir::Operation* divide = round ? defined_by(round->operand_source(0), "pd_op.divide") : nullptr;
  if (!divide || !x.HasOneUse() || !multiply->result(0).HasOneUse() || !round->result(0).HasOneUse() ||
      !divide->result(0).HasOneUse() || divide->operand_source(1) != multiply->operand_source(1))
    return pir::Value();
  const pir::Value B = divide->operand_source(0), S = multiply->operand_source(1);
  pir::Operation* block = defined_by(B, "pd_op.reshape");
  const auto shape = pir::GetShapeFromValue(B);
  if (!block || B.use_count() != 2 || shape.size() != 3 || shape[2] != 32) return pir::Value();
  const pir::Value X = block->operand_source(0);
  pir::Operation* scale = defined_by(S, "pd_op.scale");
  pir::Operation* clip = scale ? defined_by(scale->operand_source(0), "pd_op.clip") : nullptr;
  pir::Operation* max = clip ? defined_by(clip->operand_source(0), "pd_op.max") : nullptr;
  pir::Operation* abs = max ? defined_by(max->operand_source(0), "pd_op.abs") : nullptr;
  if (!abs || abs->operand_source(0) != B || S.use_count() != 2 || !clip->result(0).HasOneUse() ||
      !max->result(0).HasOneUse() || !abs->result(0).HasOneUse() || !max->attribute<pir::BoolAttribute>("keepdim").data())
    return pir::Value();
  pir::Operation* axis = defined_by(max->operand_source(1), "pd_op.full_int_array");
  const auto rank = static_cast<int64_t>(shape.size());
  if (!axis || std::abs(full_value(scale->operand_source(1)) * 127.0 - 1.0) > 1e-6 ||
      scale->attribute<pir::FloatAttribute>("bias").data() != 0.f)
    return pir::Value();
  const auto axes = axis->attribute<pir::ArrayAttribute>("value").AsVector();
  if (axes.size() != 1) return pir::Value();
  const int64_t a = axes[0].dyn_cast<pir::Int64Attribute>().data();
  if (a != -1 && a != rank - 1) return pir::Value();
  feeding->insert(feeding->end(), {unblock, multiply, round, divide, scale, clip, max, abs, block});
  return X;
}

}  // namespace paddlellm_passes
