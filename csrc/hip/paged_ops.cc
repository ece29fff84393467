// Paddle bindings of the HIP paged-cache ops (the kernels: batch_plan.hip, write_cache_kv.hip,
// block_attention.hip). Same op names, inputs, outputs and in-place maps as csrc/cpu/paged_ops.cc;
// semantics in paddlellm/ops/SPEC.md. GPU tensors; caches may also be float16 here.
//
// Shapes and dtypes are checked on the host. The checks that read the lengths and block tables run on
// the device (batch_plan.hip), since those tensors live there: each op launches the plan kernel, which
// also computes the packed rows' offsets, then its own kernel, with no host read and no synchronization.
// A bad batch makes write_cache_kv write nothing and block_attention write NaN. PADDLELLM_HIP_CHECK=1
// adds one small device-to-host copy and a stream synchronization per op, to raise the CPU ops' errors.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hip_ops.h"
#include "op_util.h"
#include "paddle/extension.h"

using namespace paddlellm_hip_binding;
namespace kernels = paddlellm_hip;

static bool sync_check() {
  static const bool on = [] {
    const char* v = std::getenv("PADDLELLM_HIP_CHECK");
    return v && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// Shapes and dtypes shared by both ops.
static kernels::PagedBatch check_batch(const char* op, int64_t T, const paddle::Tensor& first,
                                       const paddle::Tensor& key_cache, const paddle::Tensor& value_cache,
                                       const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                                       const paddle::Tensor& seq_lens_decoder) {
  check_gpu(op, "key_cache", key_cache, first);
  check_gpu(op, "value_cache", value_cache, first);
  check_gpu(op, "block_tables", block_tables, first);
  check_gpu(op, "seq_lens_this_time", seq_lens_this_time, first);
  check_gpu(op, "seq_lens_decoder", seq_lens_decoder, first);
  auto kc = key_cache.shape();
  PD_CHECK(kc.size() == 4, op, ": key_cache must be [num_blocks, num_kv_heads, block_size, head_dim]");
  PD_CHECK(value_cache.shape() == kc, op, ": value_cache must have key_cache's shape");
  PD_CHECK(key_cache.dtype() == value_cache.dtype(), op, ": key_cache and value_cache dtypes differ");
  PD_CHECK(storage_dtype(key_cache.dtype()) >= 0, op, ": caches must be float32, bfloat16 or float16, got ",
           dtype_str(key_cache.dtype()));
  PD_CHECK(kc[1] >= 1 && kc[2] >= 1 && kc[3] >= 1, op, ": key_cache ", shape_str(kc),
           " needs num_kv_heads, block_size and head_dim >= 1");
  auto bt = block_tables.shape();
  PD_CHECK(bt.size() == 2 && block_tables.dtype() == paddle::DataType::INT32, op,
           ": block_tables must be int32 [num_seqs, max_blocks_per_seq]");
  PD_CHECK(seq_lens_this_time.dtype() == paddle::DataType::INT32 && seq_lens_this_time.numel() == bt[0], op,
           ": seq_lens_this_time must be int32 [num_seqs]");
  PD_CHECK(seq_lens_decoder.dtype() == paddle::DataType::INT32 && seq_lens_decoder.numel() == bt[0], op,
           ": seq_lens_decoder must be int32 [num_seqs]");
  PD_CHECK(T <= INT32_MAX, op, ": ", T, " tokens is more than one launch takes (2^31 - 1)");
  kernels::PagedBatch b;
  b.block_tables = block_tables.data<int32_t>();
  b.seq_lens_this_time = seq_lens_this_time.data<int32_t>();
  b.seq_lens_decoder = seq_lens_decoder.data<int32_t>();
  b.T = T;
  b.S = bt[0];
  b.max_blocks = bt[1];
  b.num_blocks = kc[0];
  b.kv_heads = kc[1];
  b.block_size = kc[2];
  b.head_dim = kc[3];
  return b;
}

// Launches the plan kernel into a new workspace tensor; with PADDLELLM_HIP_CHECK=1 raises its findings.
static paddle::Tensor plan(const char* op, const kernels::PagedBatch& b, const paddle::Tensor& first, void* stream) {
  auto ws = paddle::empty({kernels::plan_workspace_ints(b.S, b.T)}, paddle::DataType::INT32, first.place());
  check_launch(op, kernels::plan_batch(b, ws.data<int32_t>(), stream));
  if (!sync_check()) return ws;
  int32_t st[4];
  check_launch(op, kernels::read_status(ws.data<int32_t>(), st, stream));
  switch (st[0]) {
    case kernels::kOk:
      break;
    case kernels::kNegativeLength:
      PD_THROW(op, ": negative sequence length at sequence ", st[1]);
    case kernels::kBeyondTable:
      PD_THROW(op, ": sequence ", st[1], " reaches position ", st[2], ", beyond its block table (", b.max_blocks,
               " blocks of ", b.block_size, ")");
    case kernels::kBadBlock:
      PD_THROW(op, ": block_tables[", st[1], "][", st[2], "] = ", st[3], " is not a block of the cache (",
               b.num_blocks, " blocks)");
    case kernels::kTokenCount:
      PD_THROW(op, ": seq_lens_this_time sums to ", st[1], " but the batch has ", b.T, " tokens");
    default:
      PD_THROW(op, ": unknown plan status ", st[0]);
  }
  return ws;
}

// ---------------------------------------------------------------- write_cache_kv

void WriteCacheKV(const paddle::Tensor& key, const paddle::Tensor& value, paddle::Tensor& key_cache,
                  paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                  const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder,
                  const paddle::optional<paddle::Tensor>& key_scale,
                  const paddle::optional<paddle::Tensor>& value_scale) {
  const char* op = "paddlellm_write_cache_kv";
  check_gpu(op, "key", key, key);
  check_gpu(op, "value", value, key);
  PD_CHECK(!key_scale && !value_scale, op, ": key_scale / value_scale are a static int8 cache's, which only the ",
           "CPU has (--cachekv_int8_type is CPU-only)");
  auto ks = key.shape();
  PD_CHECK(ks.size() == 3, op, ": key must be [tokens, num_kv_heads, head_dim]");
  PD_CHECK(value.shape() == ks, op, ": value must have key's shape");
  kernels::PagedBatch b =
      check_batch(op, ks[0], key, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  PD_CHECK(ks[1] == b.kv_heads && ks[2] == b.head_dim, op, ": key is [", ks[0], ", ", ks[1], ", ", ks[2],
           "] but the cache holds ", b.kv_heads, " kv heads of head_dim ", b.head_dim);
  for (const paddle::Tensor* x : {&key, &value})
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32 || x->dtype() == key_cache.dtype(), op,
             ": key/value must be float32 or the cache's dtype");
  if (b.T == 0) return;
  void* stream = stream_of(key);
  paddle::Tensor ws = plan(op, b, key, stream);
  const auto cd = static_cast<kernels::Dtype>(storage_dtype(key_cache.dtype()));
  check_launch(op, kernels::write_cache_kv(b, ws.data<int32_t>(), key.data(),
                                           static_cast<kernels::Dtype>(storage_dtype(key.dtype())), key_cache.data(),
                                           cd, stream));
  check_launch(op, kernels::write_cache_kv(b, ws.data<int32_t>(), value.data(),
                                           static_cast<kernels::Dtype>(storage_dtype(value.dtype())),
                                           value_cache.data(), cd, stream));
}

std::vector<std::vector<int64_t>> WriteCacheKVInferShape(
    const std::vector<int64_t>& key, const std::vector<int64_t>& value, const std::vector<int64_t>& key_cache,
    const std::vector<int64_t>& value_cache, const std::vector<int64_t>& block_tables,
    const std::vector<int64_t>& seq_lens_this_time, const std::vector<int64_t>& seq_lens_decoder,
    const paddle::optional<std::vector<int64_t>>& key_scale, const paddle::optional<std::vector<int64_t>>& value_scale) {
  return {key_cache, value_cache};
}

std::vector<paddle::DataType> WriteCacheKVInferDtype(
    const paddle::DataType& key, const paddle::DataType& value, const paddle::DataType& key_cache,
    const paddle::DataType& value_cache, const paddle::DataType& block_tables,
    const paddle::DataType& seq_lens_this_time, const paddle::DataType& seq_lens_decoder,
    const paddle::optional<paddle::DataType>& key_scale, const paddle::optional<paddle::DataType>& value_scale) {
  return {key_cache, value_cache};
}

PD_BUILD_OP(paddlellm_write_cache_kv)
    .Inputs({"key", "value", "key_cache", "value_cache", "block_tables", "seq_lens_this_time", "seq_lens_decoder",
             paddle::Optional("key_scale"), paddle::Optional("value_scale")})
    .Outputs({"key_cache_out", "value_cache_out"})
    .SetInplaceMap({{"key_cache", "key_cache_out"}, {"value_cache", "value_cache_out"}})
    .SetKernelFn(PD_KERNEL(WriteCacheKV))
    .SetInferShapeFn(PD_INFER_SHAPE(WriteCacheKVInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WriteCacheKVInferDtype));

// ---------------------------------------------------------------- block_attention

std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& key_cache,
                                           const paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                                           const paddle::Tensor& seq_lens_this_time,
                                           const paddle::Tensor& seq_lens_decoder) {
  const char* op = "paddlellm_block_attention";
  check_f32(op, "q", q, q);
  auto qs = q.shape();
  PD_CHECK(qs.size() == 3, op, ": q must be [tokens, num_heads, head_dim]");
  kernels::PagedBatch b =
      check_batch(op, qs[0], q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  PD_CHECK(qs[2] == b.head_dim, op, ": q has head_dim ", qs[2], " but the cache ", b.head_dim);
  PD_CHECK(qs[1] % b.kv_heads == 0, op, ": num_heads ", qs[1], " is not a multiple of num_kv_heads ", b.kv_heads);
  PD_CHECK(b.head_dim <= kernels::block_attention_max_head_dim(), op, ": head_dim ", b.head_dim,
           " is larger than the kernel takes (", kernels::block_attention_max_head_dim(), ")");
  PD_CHECK(qs[1] <= 65535, op, ": ", qs[1], " heads is more than one launch takes (65535)");
  auto out = paddle::empty(qs, paddle::DataType::FLOAT32, q.place());
  if (b.T == 0) return {out};
  void* stream = stream_of(q);
  paddle::Tensor ws = plan(op, b, q, stream);
  check_launch(op, kernels::block_attention(b, ws.data<int32_t>(), q.data<float>(), qs[1], key_cache.data(),
                                            value_cache.data(),
                                            static_cast<kernels::Dtype>(storage_dtype(key_cache.dtype())),
                                            out.data<float>(), stream));
  return {out};
}

std::vector<std::vector<int64_t>> BlockAttentionInferShape(
    const std::vector<int64_t>& q, const std::vector<int64_t>& key_cache, const std::vector<int64_t>& value_cache,
    const std::vector<int64_t>& block_tables, const std::vector<int64_t>& seq_lens_this_time,
    const std::vector<int64_t>& seq_lens_decoder) {
  return {q};
}

std::vector<paddle::DataType> BlockAttentionInferDtype(
    const paddle::DataType& q, const paddle::DataType& key_cache, const paddle::DataType& value_cache,
    const paddle::DataType& block_tables, const paddle::DataType& seq_lens_this_time,
    const paddle::DataType& seq_lens_decoder) {
  return {q};
}

PD_BUILD_OP(paddlellm_block_attention)
    .Inputs({"q", "key_cache", "value_cache", "block_tables", "seq_lens_this_time", "seq_lens_decoder"})
    .Outputs({"out"})
    .SetKernelFn(PD_KERNEL(BlockAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(BlockAttentionInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BlockAttentionInferDtype));
