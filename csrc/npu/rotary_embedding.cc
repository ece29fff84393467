// paddlellm_rotary_embedding on the npu (in place). Semantics: paddlellm/ops/SPEC.md.
//   q [T, Hq, D], k [T, Hk, D] float32, positions int32 [T], inv_freq float32 [D/2]
//   angle = float32(positions[t]) * inv_freq[i] (float32), c = cos(angle), s = sin(angle)
//   each pair (a, b) -> (a*c - b*s, b*c + a*s); pairs (i, i + D/2) (rotate-half) or (2i, 2i + 1) (interleaved)
//
// cos/sin are built on the device from positions and inv_freq with Paddle's own ops on the custom place
// (cast, multiply, cos, sin: the same float32 angle as model.rotary forms). Then:
// - rotate-half with D = 128 and a UB-sized head count: aclnnApplyRotaryPosEmb, in place on q's and k's
//   memory, viewed as BSND [T, 1, H, D] with cos/sin [T, 1, 1, D] (the half-width values repeated twice);
// - otherwise (interleaved pairs, D != 128, or too many heads for the kernel's UB): the same formula with
//   Paddle ops (slice, multiply, subtract, add, concat, every product rounded, no FMA), and the result
//   copied back into q's / k's memory on the stream (aclrtMemcpyAsync), so the op stays in place.
#include "npu_common.h"

using namespace paddlellm_npu;

namespace {

namespace pe = paddle::experimental;

// aclnnApplyRotaryPosEmb's documented limits: D must be 128, and the kernel's unified-buffer need, for
// float32 (no cast, 4-byte elements) (Hq + Hk) * 128 * 4 * 5 + 128 * 4 * 4 bytes, must fit the AI Core's
// UB (192 KiB on Atlas A2), i.e. Hq + Hk <= 76.
constexpr int64_t kRopeHeadDim = 128;
constexpr int64_t kUbBytes = 192 * 1024;

bool aclnn_rope_fits(int64_t heads, int64_t D) {
  return D == kRopeHeadDim && heads * kRopeHeadDim * 4 * 5 + kRopeHeadDim * 4 * 4 <= kUbBytes;
}

// The composite path for one of q / k: x [T, H, D] rotated with c, s [T, D/2], written back into x.
void rotate_with_paddle_ops(paddle::Tensor& x, const paddle::Tensor& c, const paddle::Tensor& s, bool interleaved) {
  const auto shape = x.shape();
  const int64_t T = shape[0], H = shape[1], D = shape[2], half = D / 2;
  paddle::Tensor a, b, cb, sb;
  int axis;
  if (interleaved) {  // (x[2i], x[2i + 1]): view [T, H, D/2, 2], pair members along the last axis
    const paddle::Tensor x4 = pe::reshape(x, std::vector<int64_t>{T, H, half, 2});
    a = pe::slice(x4, {3}, std::vector<int64_t>{0}, std::vector<int64_t>{1}, {1}, {});
    b = pe::slice(x4, {3}, std::vector<int64_t>{1}, std::vector<int64_t>{2}, {1}, {});
    cb = pe::reshape(c, std::vector<int64_t>{T, 1, half, 1});
    sb = pe::reshape(s, std::vector<int64_t>{T, 1, half, 1});
    axis = 3;
  } else {  // (x[i], x[i + D/2])
    a = pe::slice(x, {2}, std::vector<int64_t>{0}, std::vector<int64_t>{half}, {1}, {});
    b = pe::slice(x, {2}, std::vector<int64_t>{half}, std::vector<int64_t>{D}, {1}, {});
    cb = pe::reshape(c, std::vector<int64_t>{T, 1, half});
    sb = pe::reshape(s, std::vector<int64_t>{T, 1, half});
    axis = 2;
  }
  const paddle::Tensor ra = pe::subtract(pe::multiply(a, cb), pe::multiply(b, sb));
  const paddle::Tensor rb = pe::add(pe::multiply(b, cb), pe::multiply(a, sb));
  const paddle::Tensor rotated = contiguous(pe::concat({ra, rb}, axis));  // x's layout again
  copy_into(x, rotated);  // queued after the ops above on the same stream
}

// A small input (positions, inv_freq) on q's device: itself, or a device copy of a CPU tensor.
paddle::Tensor on_device_of(const paddle::Tensor& t, const paddle::Place& place) {
  return t.is_cpu() ? to_device(contiguous(t), place) : t;
}

}  // namespace

void NpuRotaryEmbedding(paddle::Tensor& q, paddle::Tensor& k, const paddle::Tensor& positions,
                        const paddle::Tensor& inv_freq, bool interleaved) {
  const char* op = "paddlellm_rotary_embedding";
  check_on_device(op, "q", q);
  check_on_device(op, "k", k);
  check_dtype(op, "q", q, paddle::DataType::FLOAT32);
  check_dtype(op, "k", k, paddle::DataType::FLOAT32);
  check_dtype(op, "positions", positions, paddle::DataType::INT32);
  check_dtype(op, "inv_freq", inv_freq, paddle::DataType::FLOAT32);
  const auto qs = q.shape(), ks = k.shape();
  PD_CHECK(qs.size() == 3, op, ": q must be [tokens, num_heads, head_dim], got ", shape_str(qs));
  PD_CHECK(ks.size() == 3, op, ": k must be [tokens, num_kv_heads, head_dim], got ", shape_str(ks));
  const int64_t T = qs[0], D = qs[2];
  PD_CHECK(ks[0] == T && ks[2] == D, op, ": k ", shape_str(ks), " must match q ", shape_str(qs),
           " in tokens and head_dim");
  PD_CHECK(D % 2 == 0, op, ": head_dim must be even, got ", D);
  PD_CHECK(positions.shape().size() == 1 && positions.shape()[0] == T, op, ": positions must be [", T,
           "] (q's tokens), got ", shape_str(positions.shape()));
  PD_CHECK(inv_freq.shape().size() == 1 && inv_freq.shape()[0] == D / 2, op, ": inv_freq must be [", D / 2,
           "] (head_dim / 2), got ", shape_str(inv_freq.shape()));
  // In place means q's own memory: a strided view would be rotated as if it were contiguous.
  PD_CHECK(q.is_contiguous() && k.is_contiguous(), op, ": q and k must be contiguous (the op writes into them)");
  const int64_t Hq = qs[1], Hk = ks[1], half = D / 2;
  if (T == 0 || D == 0 || Hq + Hk == 0) return;
  const paddle::Place place = q.place();

  // angle [T, D/2] = float32(position) * inv_freq, rounded to float32 as model.rotary forms it. (CPU
  // positions / inv_freq are copied over first: a copy drains the stream.)
  const paddle::Tensor pos_dev = on_device_of(positions, place);
  const paddle::Tensor freq_dev = on_device_of(inv_freq, place);
  const paddle::Tensor pos = pe::reshape(pe::cast(pos_dev, paddle::DataType::FLOAT32), std::vector<int64_t>{T, 1});
  const paddle::Tensor freq = pe::reshape(freq_dev, std::vector<int64_t>{1, half});
  const paddle::Tensor angle = pe::multiply(pos, freq);
  const paddle::Tensor c = contiguous(pe::cos(angle));
  const paddle::Tensor s = contiguous(pe::sin(angle));

  if (!interleaved && Hq > 0 && Hk > 0 && aclnn_rope_fits(Hq + Hk, D)) {
    // Rotate-half cos/sin over the full head: [c, c] and [s, s] along the last dim.
    const paddle::Tensor cos_full = contiguous(pe::concat({c, c}, -1));
    const paddle::Tensor sin_full = contiguous(pe::concat({s, s}, -1));
    AclTensor aq(q, {T, 1, Hq, D}), ak(k, {T, 1, Hk, D});
    AclTensor ac(cos_full, {T, 1, 1, D}), as(sin_full, {T, 1, 1, D});
    launch<api::aclnnApplyRotaryPosEmb>(place, aq.get(), ak.get(), ac.get(), as.get(), static_cast<int64_t>(1));
    return;
  }
  if (Hq > 0) rotate_with_paddle_ops(q, c, s, interleaved);
  if (Hk > 0) rotate_with_paddle_ops(k, c, s, interleaved);
}

std::vector<std::vector<int64_t>> NpuRotaryEmbeddingInferShape(const std::vector<int64_t>& q,
                                                               const std::vector<int64_t>& k,
                                                               const std::vector<int64_t>& positions,
                                                               const std::vector<int64_t>& inv_freq) {
  return {q, k};
}

std::vector<paddle::DataType> NpuRotaryEmbeddingInferDtype(const paddle::DataType& q, const paddle::DataType& k,
                                                           const paddle::DataType& positions,
                                                           const paddle::DataType& inv_freq) {
  return {q, k};
}

PD_BUILD_OP(paddlellm_rotary_embedding)
    .Inputs({"q", "k", "positions", "inv_freq"})
    .Outputs({"q_out", "k_out"})
    .Attrs({"interleaved: bool"})
    .SetInplaceMap({{"q", "q_out"}, {"k", "k_out"}})
    .SetKernelFn(PD_KERNEL(NpuRotaryEmbedding))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuRotaryEmbeddingInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuRotaryEmbeddingInferDtype));
