// paddlellm_weight_only_linear on the npu: aclnnWeightQuantBatchMatmulV2. Semantics: paddlellm/ops/SPEC.md.
//   out [..., N] = x [..., K] @ W, W[k, n] = weight[k, n] * scale[k / group, n] (+ offset[k / group, n])
//   x float32, weight int8 [K, N] (int8 values, or int4 values 0..15 one a byte), scale/offset float32 [N] or
//   [G, N], group = K / G.
//
// CANN computes y = x @ ((weight + antiquantOffset) * antiquantScale) with x, the scales and y in float16 or
// bfloat16 (not float32). So, with Paddle ops on the device: x is cast to float16 and viewed [M, K], scale
// is cast to float16, antiquantOffset = offset / scale computed in float32 (0 where scale is 0), then cast
// to float16, so that (q + offset / scale) * scale = q * scale + offset; y float16 [M, N] is cast back to
// float32 for out. float16 rather than bfloat16: 11 significant bits against 8, and LLM activations and
// these outputs stay far below float16's 65504 in practice (a larger value becomes inf).
// Because x and y pass through float16 (relative rounding 2^-11 ~ 4.9e-4 each), SPEC's "matmul"
// tolerance (rtol 1e-5, for float32 activations) is not expected to hold here; CANN accumulates the
// products in float32 internally.
//
// G = 1 (scale [N] or [1, N]): per channel, antiquantGroupSize 0, scale viewed [N]. G > 1: per group,
// antiquantGroupSize = K / G, which CANN requires to be a multiple of 32 (in [32, K - 1]); other group sizes
// are refused. CANN also takes K and N only in [1, 65535] and M in [1, 2^31 - 1] (checked). M = 0 or N = 0:
// an empty out, no call (aclnn ops take no empty tensors); K = 0: zeros (Paddle's full), no call.
// Not representable: a scale of 0 with a non-zero offset (the weight is then 0 instead of offset).
#include "npu_common.h"

using namespace paddlellm_npu;

namespace {

namespace pe = paddle::experimental;

constexpr int64_t kMaxKN = 65535;  // CANN's bound on k and n
constexpr int64_t kGroupAlign = 32;  // per-group antiquantGroupSize: a multiple of 32

}  // namespace

std::vector<paddle::Tensor> NpuWeightOnlyLinear(const paddle::Tensor& x, const paddle::Tensor& weight,
                                                const paddle::Tensor& scale,
                                                const paddle::optional<paddle::Tensor>& offset) {
  const char* op = "paddlellm_weight_only_linear";
  check_on_device(op, "x", x);
  check_dtype(op, "x", x, paddle::DataType::FLOAT32);
  check_on_device(op, "weight", weight);
  check_dtype(op, "weight", weight, paddle::DataType::INT8);
  check_on_device(op, "scale", scale);
  check_dtype(op, "scale", scale, paddle::DataType::FLOAT32);
  const auto xs = x.shape(), ws = weight.shape(), ss = scale.shape();
  PD_CHECK(!xs.empty(), op, ": x must be [..., K], got a scalar");
  PD_CHECK(ws.size() == 2, op, ": weight must be 2-D [K, N], got ", shape_str(ws));
  const int64_t K = xs.back(), N = ws[1];
  PD_CHECK(ws[0] == K, op, ": weight ", shape_str(ws), " must have K = ", K, " (x's last dim) rows");
  const int64_t G = ss.size() == 2 ? ss[0] : 1;
  PD_CHECK((ss.size() == 1 && ss[0] == N) || (ss.size() == 2 && ss[1] == N && G >= 1 && K % G == 0), op,
           ": scale must be [N] or [G, N] with G >= 1 dividing K (N = ", N, ", K = ", K, "), got ", shape_str(ss));
  if (offset) {
    check_on_device(op, "offset", *offset);
    check_dtype(op, "offset", *offset, paddle::DataType::FLOAT32);
    PD_CHECK(offset->shape() == ss, op, ": offset must have scale's shape ", shape_str(ss), ", got ",
             shape_str(offset->shape()));
  }
  int64_t M = 1;
  for (size_t i = 0; i + 1 < xs.size(); ++i) M *= xs[i];
  std::vector<int64_t> os(xs.begin(), xs.end() - 1);
  os.push_back(N);
  if (M == 0 || N == 0) return {paddle::empty(os, paddle::DataType::FLOAT32, x.place())};
  if (K == 0) return {pe::full(os, 0.f, paddle::DataType::FLOAT32, x.place())};  // an empty sum, as on the CPU
  PD_CHECK(K <= kMaxKN && N <= kMaxKN, op,
           ": on the npu K and N must be at most 65535 (aclnnWeightQuantBatchMatmulV2), got K = ", K, ", N = ", N);
  PD_CHECK(M <= INT32_MAX, op, ": on the npu at most 2^31 - 1 rows (aclnnWeightQuantBatchMatmulV2), got ", M);
  const int64_t group = K / G;
  PD_CHECK(G == 1 || group % kGroupAlign == 0, op,
           ": per-group scales on the npu need a group size (K / G) that is a multiple of 32 "
           "(aclnnWeightQuantBatchMatmulV2), got K = ",
           K, ", G = ", G, ", group ", group);
  const paddle::Place place = x.place();

  const paddle::Tensor xh =
      contiguous(pe::cast(pe::reshape(contiguous(x), std::vector<int64_t>{M, K}), paddle::DataType::FLOAT16));
  const paddle::Tensor wc = contiguous(weight);
  const paddle::Tensor sc = contiguous(scale);
  const std::vector<int64_t> as = G == 1 ? std::vector<int64_t>{N} : std::vector<int64_t>{G, N};
  const paddle::Tensor sh = contiguous(pe::cast(sc, paddle::DataType::FLOAT16));
  paddle::Tensor oh;
  if (offset) {
    const paddle::Tensor ratio = pe::divide(contiguous(*offset), sc);  // float32
    const paddle::Tensor zero = pe::zeros_like(sc);
    oh = contiguous(pe::cast(pe::where(pe::not_equal(sc, zero), ratio, zero), paddle::DataType::FLOAT16));
  }
  paddle::Tensor y = paddle::empty({M, N}, paddle::DataType::FLOAT16, place);
  {
    AclTensor ax(xh), aw(wc), ascale(sh, as), ay(y);
    AclTensor aoff;
    if (offset) aoff = AclTensor(oh, as);
    launch<api::aclnnWeightQuantBatchMatmulV2>(place, ax.get(), aw.get(), ascale.get(), aoff.get(),
                                               static_cast<aclTensor*>(nullptr) /*quantScale*/,
                                               static_cast<aclTensor*>(nullptr) /*quantOffset*/,
                                               static_cast<aclTensor*>(nullptr) /*bias*/,
                                               static_cast<int>(G == 1 ? 0 : group), ay.get());
  }
  return {pe::reshape(pe::cast(y, paddle::DataType::FLOAT32), os)};
}

std::vector<std::vector<int64_t>> NpuWeightOnlyLinearInferShape(const std::vector<int64_t>& x,
                                                                const std::vector<int64_t>& weight,
                                                                const std::vector<int64_t>& scale,
                                                                const paddle::optional<std::vector<int64_t>>& offset) {
  std::vector<int64_t> out = x;
  if (!out.empty()) out.back() = weight.size() == 2 ? weight[1] : -1;
  return {out};
}

std::vector<paddle::DataType> NpuWeightOnlyLinearInferDtype(const paddle::DataType& x, const paddle::DataType& weight,
                                                            const paddle::DataType& scale,
                                                            const paddle::optional<paddle::DataType>& offset) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(paddlellm_weight_only_linear)
    .Inputs({"x", "weight", "scale", paddle::Optional("offset")})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(NpuWeightOnlyLinear))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuWeightOnlyLinearInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuWeightOnlyLinearInferDtype));
