// paddlellm_block_attention on the npu. Semantics: paddlellm/ops/SPEC.md.
//   q [T, num_heads, head_dim] float32 (packed rows of the batch); caches [num_blocks, num_kv_heads,
//   block_size, head_dim]; out [T, num_heads, head_dim] float32. Query token i of sequence s (position
//   p = seq_lens_decoder[s] + i) attends to positions 0..p of s (causal within a prompt chunk), GQA.
//
// CANN's attention kernels take float16/bfloat16 only, so on the npu the caches must be bfloat16 or
// float16; q is cast to the cache's dtype, the kernel accumulates in float32 internally, and the result is
// cast back to float32 (SPEC.md's 2e-5 tolerance is for float32 queries; here q and out pass through
// 16-bit values).
//
// The block tables and sequence lengths are copied to the host (each host/device copy first drains the
// stream: a few synchronizations per call, all before this op queues its kernels) to check them, build
// the host-side aclIntArray lengths and the gather indices. Idle slots (seq_lens_this_time == 0) are dropped
// from the batch; B = the active sequences, their block-table rows gathered on the device if any slot is idle.
// Two kernels, both reading the cache through the block table in its own layout (blocknum, KV_N,
// blocksize, D), which CANN supports with a BNSD query:
// - Pure decode step (every active sequence has 1 token): aclnnIncreFlashAttentionV4,
//   inputLayout "BNSD", query [B, num_heads, 1, D] (q's rows as they are), actualSeqLengths = KV lengths
//   (seq_lens_decoder + 1), blocktable [B, max_blocks] int32, innerPrecise 0.
//   Constraint: block_size a multiple of 16 and at most 512 (CANN's paged-attention limit for 16-bit KV).
// - Any step with a prompt chunk (some sequence has more than 1 token): aclnnFusedInferAttentionScore,
//   inputLayout "BNSD", query right-padded to [B, num_heads, S_max, D] (gathered from q's rows, padding
//   rows repeat a real row and their outputs are dropped), actualSeqLengths = this step's tokens per
//   sequence, actualSeqLengthsKv = seq_lens_decoder + seq_lens_this_time, sparseMode 3 (rightDownCausal:
//   query row i of a sequence with n new tokens and L = past + n KV positions sees KV positions
//   0 .. L - n + i, exactly SPEC's causal rule) with CANN's 2048 x 2048 int8 mask (1 above the diagonal),
//   preTokens 2147483647, nextTokens 0, innerPrecise 0, softmaxLseFlag false, blockSize = block_size.
//   Constraints: block_size a multiple of 128 in [128, 512], head_dim a multiple of 16 (CANN's
//   PromptFlashAttention branch with paged KV), and the cache must hold at least the sum over the batch of
//   ceil(KV length / block_size) blocks.
// Both: num_heads <= 256, head_dim <= 512, num_heads / num_kv_heads <= 64, scale 1 / sqrt(head_dim).
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "npu_common.h"

using namespace paddlellm_npu;

namespace {

namespace pe = paddle::experimental;

constexpr int64_t kMaskSize = 2048;  // sparse modes 2-4 take this fixed, compressed causal mask

// The sparse-mode-3 mask on the place's device: int8 [2048, 2048], 1 (masked) above the diagonal. Built
// once per device and kept for the life of the process.
const paddle::Tensor& causal_mask(const paddle::Place& place) {
  static std::mutex mu;
  static auto* masks = new std::map<int, paddle::Tensor>();
  std::lock_guard<std::mutex> lock(mu);
  const int dev = place.GetDeviceId();
  auto it = masks->find(dev);
  if (it != masks->end()) return it->second;
  paddle::Tensor host = paddle::empty({kMaskSize, kMaskSize}, paddle::DataType::INT8, paddle::CPUPlace());
  int8_t* m = host.data<int8_t>();
  for (int64_t i = 0; i < kMaskSize; ++i)
    for (int64_t j = 0; j < kMaskSize; ++j) m[i * kMaskSize + j] = j > i ? 1 : 0;
  return masks->emplace(dev, to_device(host, place)).first->second;
}

paddle::Tensor on_device_of(const paddle::Tensor& t, const paddle::Place& place) {
  return t.is_cpu() ? to_device(contiguous(t), place) : contiguous(t);
}

AclTensorList one_tensor_list(const paddle::Tensor& t) {
  std::vector<AclTensor> v;
  v.emplace_back(t);
  return AclTensorList(std::move(v));
}

}  // namespace

std::vector<paddle::Tensor> NpuBlockAttention(const paddle::Tensor& q, const paddle::Tensor& key_cache,
                                              const paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                                              const paddle::Tensor& seq_lens_this_time,
                                              const paddle::Tensor& seq_lens_decoder) {
  const char* op = "paddlellm_block_attention";
  check_on_device(op, "q", q);
  check_dtype(op, "q", q, paddle::DataType::FLOAT32);
  const auto qs = q.shape();
  PD_CHECK(qs.size() == 3, op, ": q must be [tokens, num_heads, head_dim], got ", shape_str(qs));
  HostBatch b = check_batch(op, qs[0], key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  const int64_t T = b.T, Hq = qs[1], Hk = b.kv_heads, D = b.head_dim, bs = b.block_size;
  PD_CHECK(qs[2] == D, op, ": q has head_dim ", qs[2], " but the cache ", D);
  PD_CHECK(Hk > 0 && Hq % Hk == 0, op, ": num_heads ", Hq, " is not a multiple of num_kv_heads ", Hk);
  const paddle::DataType dt = key_cache.dtype();
  PD_CHECK(dt == paddle::DataType::BFLOAT16 || dt == paddle::DataType::FLOAT16, op,
           ": on the npu the caches must be bfloat16 or float16 (CANN's attention kernels take 16-bit KV), got ",
           dtype_str(dt));
  if (T == 0) return {paddle::empty(qs, paddle::DataType::FLOAT32, q.place())};
  PD_CHECK(Hq <= 256 && D <= 512 && Hq / Hk <= 64, op,
           ": CANN's attention takes num_heads <= 256, head_dim <= 512 and num_heads / num_kv_heads <= 64, got ",
           Hq, ", ", D, ", ", Hq / Hk);
  const paddle::Place place = q.place();

  // The active sequences (this_time > 0), in batch order; their first packed row, lengths.
  std::vector<int32_t> active;
  std::vector<int64_t> first_row, q_lens, kv_lens;
  int64_t max_n = 0, blocks_needed = 0;
  for (int64_t s = 0, row = 0; s < b.S; row += b.this_time[s], ++s) {
    const int64_t n = b.this_time[s];
    if (n == 0) continue;
    active.push_back(static_cast<int32_t>(s));
    first_row.push_back(row);
    q_lens.push_back(n);
    kv_lens.push_back(b.decoder[s] + n);
    max_n = std::max(max_n, n);
    blocks_needed += (b.decoder[s] + n + bs - 1) / bs;
  }
  const int64_t B = static_cast<int64_t>(active.size());
  PD_CHECK(B <= 65536, op, ": CANN's attention takes at most 65536 sequences a call, got ", B);

  const bool decode = max_n == 1;
  if (decode) {
    PD_CHECK(bs % 16 == 0 && bs <= 512, op,
             ": a decode step on the npu needs block_size a multiple of 16 and at most 512 "
             "(aclnnIncreFlashAttentionV4 paged attention), got ",
             bs);
  } else {
    PD_CHECK(bs % 128 == 0 && bs >= 128 && bs <= 512, op,
             ": a step with prompt tokens on the npu needs block_size a multiple of 128 in [128, 512] "
             "(aclnnFusedInferAttentionScore paged attention), got ",
             bs);
    PD_CHECK(D % 16 == 0, op, ": a step with prompt tokens on the npu needs head_dim a multiple of 16, got ", D);
    PD_CHECK(blocks_needed <= b.num_blocks, op, ": CANN's paged attention needs the cache to hold the batch's ",
             blocks_needed, " blocks (sum of ceil(KV length / block_size)), it has ", b.num_blocks);
  }

  // Every host-to-device copy first (each one drains the stream), then the kernels.
  paddle::Tensor tables = on_device_of(block_tables, place);
  paddle::Tensor active_dev, pad_dev, unpad_dev;
  if (B != b.S) active_dev = to_device(host_tensor(active, {B}), place);
  const int64_t Smax = max_n;
  if (!decode) {
    // Padded row bi * Smax + i holds packed row first_row[bi] + i (a real row of the same sequence past
    // its end: those outputs are dropped); packed row r comes back from its padded row.
    std::vector<int32_t> pad_rows(static_cast<size_t>(B * Smax)), unpad_rows(static_cast<size_t>(T));
    for (int64_t bi = 0; bi < B; ++bi) {
      const int64_t n = q_lens[bi], r0 = first_row[bi];
      for (int64_t i = 0; i < Smax; ++i) pad_rows[bi * Smax + i] = static_cast<int32_t>(r0 + std::min(i, n - 1));
      for (int64_t i = 0; i < n; ++i) unpad_rows[r0 + i] = static_cast<int32_t>(bi * Smax + i);
    }
    pad_dev = to_device(host_tensor(pad_rows, {B * Smax}), place);
    unpad_dev = to_device(host_tensor(unpad_rows, {T}), place);
  }
  const paddle::Tensor* mask = decode ? nullptr : &causal_mask(place);

  if (B != b.S) tables = contiguous(pe::gather(tables, active_dev, 0));
  const paddle::Tensor qx = contiguous(pe::cast(q, dt));  // [T, Hq, D] in the cache's dtype
  const AclTensorList keys = one_tensor_list(key_cache);
  const AclTensorList values = one_tensor_list(value_cache);
  const AclTensor table(tables);
  const AclIntArray kv_len(kv_lens);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  char layout[] = "BNSD";

  if (decode) {
    // Pure decode: q's rows are the active sequences in order (T == B), already BNSD [B, Hq, 1, D].
    paddle::Tensor attn = paddle::empty({B, Hq, 1, D}, dt, place);
    const AclTensor query(qx, {B, Hq, 1, D}), out(attn);
    launch<api::aclnnIncreFlashAttentionV4>(
        place, query.get(), keys.get(), values.get(), nullptr /*pseShift*/, nullptr /*attenMask*/, kv_len.get(),
        nullptr /*dequantScale1*/, nullptr /*quantScale1*/, nullptr /*dequantScale2*/, nullptr /*quantScale2*/,
        nullptr /*quantOffset2*/, nullptr /*antiquantScale*/, nullptr /*antiquantOffset*/, table.get(),
        nullptr /*kvPaddingSize*/, Hq, scale, layout, Hk, bs, static_cast<int64_t>(0) /*innerPrecise*/, out.get());
    return {pe::cast(pe::reshape(attn, std::vector<int64_t>{T, Hq, D}), paddle::DataType::FLOAT32)};
  }

  // A step with prompt chunks: right-padded BNSD query, causal from the bottom-right corner.
  const paddle::Tensor q_pad = pe::gather(qx, pad_dev, 0);
  const paddle::Tensor q_bnsd = contiguous(pe::transpose(
      pe::reshape(q_pad, std::vector<int64_t>{B, Smax, Hq, D}), std::vector<int>{0, 2, 1, 3}));
  paddle::Tensor attn = paddle::empty({B, Hq, Smax, D}, dt, place);
  paddle::Tensor lse = paddle::empty({1}, paddle::DataType::FLOAT32, place);  // unused (softmaxLseFlag false)
  const AclTensor query(q_bnsd), out(attn), lse_out(lse), atten_mask(*mask);
  const AclIntArray q_len(q_lens);
  launch<api::aclnnFusedInferAttentionScore>(
      place, query.get(), keys.get(), values.get(), nullptr /*pseShift*/, atten_mask.get(), q_len.get(),
      kv_len.get(), nullptr /*deqScale1*/, nullptr /*quantScale1*/, nullptr /*deqScale2*/, nullptr /*quantScale2*/,
      nullptr /*quantOffset2*/, nullptr /*antiquantScale*/, nullptr /*antiquantOffset*/, table.get(),
      nullptr /*queryPaddingSize*/, nullptr /*kvPaddingSize*/, Hq, scale, static_cast<int64_t>(2147483647),
      static_cast<int64_t>(0), layout, Hk, static_cast<int64_t>(3) /*sparseMode*/,
      static_cast<int64_t>(0) /*innerPrecise*/, bs, static_cast<int64_t>(0) /*antiquantMode*/, false, out.get(),
      lse_out.get());
  const paddle::Tensor attn_bsnd = contiguous(pe::transpose(attn, std::vector<int>{0, 2, 1, 3}));
  const paddle::Tensor rows = pe::gather(pe::reshape(attn_bsnd, std::vector<int64_t>{B * Smax, Hq, D}),
                                         unpad_dev, 0);
  return {pe::cast(rows, paddle::DataType::FLOAT32)};
}

std::vector<std::vector<int64_t>> NpuBlockAttentionInferShape(
    const std::vector<int64_t>& q, const std::vector<int64_t>& key_cache, const std::vector<int64_t>& value_cache,
    const std::vector<int64_t>& block_tables, const std::vector<int64_t>& seq_lens_this_time,
    const std::vector<int64_t>& seq_lens_decoder) {
  return {q};
}

std::vector<paddle::DataType> NpuBlockAttentionInferDtype(
    const paddle::DataType& q, const paddle::DataType& key_cache, const paddle::DataType& value_cache,
    const paddle::DataType& block_tables, const paddle::DataType& seq_lens_this_time,
    const paddle::DataType& seq_lens_decoder) {
  return {q};
}

PD_BUILD_OP(paddlellm_block_attention)
    .Inputs({"q", "key_cache", "value_cache", "block_tables", "seq_lens_this_time", "seq_lens_decoder"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(NpuBlockAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuBlockAttentionInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuBlockAttentionInferDtype));
