// paddlellm_write_cache_kv on the npu (in place): aclnnScatterNdUpdate. Semantics: paddlellm/ops/SPEC.md.
//   key, value [T, num_kv_heads, head_dim] float32 or the cache's dtype
//   key_cache, value_cache [num_blocks, num_kv_heads, block_size, head_dim] float32, bfloat16 or float16
// For token row r of sequence s at position p = seq_lens_decoder[s] + i, every head h:
//   cache[block_tables[s][p / block_size], h, p % block_size, :] = x[r, h, :]
//
// The slot indices are derived on the host: block_tables and the two length vectors are copied to the
// host (a blocking copy, i.e. a stream synchronization, unless they are already CPU tensors), checked
// exactly as the CPU op checks them, and turned into int32 indices [T * num_kv_heads, 3] = (block, head,
// slot) in row-major (token, head) order, copied to the device. Then one aclnnScatterNdUpdate per cache
// writes updates [T * num_kv_heads, head_dim] (key/value viewed flat; float32 rows cast to the cache's
// dtype on the device first) into the cache's own memory. Positions of one step are distinct unless two
// sequences share a block, where the order of the duplicate writes is CANN's (the CPU op's last row wins).
#include "npu_common.h"

using namespace paddlellm_npu;

namespace {

void scatter_rows(const paddle::Tensor& x, paddle::Tensor& cache, const paddle::Tensor& indices, int64_t rows,
                  int64_t head_dim) {
  const paddle::Tensor updates =
      contiguous(x.dtype() == cache.dtype() ? x : paddle::experimental::cast(x, cache.dtype()));
  AclTensor av(cache), ai(indices), au(updates, {rows, head_dim});
  launch<api::aclnnScatterNdUpdate>(cache.place(), av.get(), ai.get(), au.get());
}

}  // namespace

void NpuWriteCacheKV(const paddle::Tensor& key, const paddle::Tensor& value, paddle::Tensor& key_cache,
                     paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                     const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder,
                     const paddle::optional<paddle::Tensor>& key_scale,
                     const paddle::optional<paddle::Tensor>& value_scale) {
  const char* op = "paddlellm_write_cache_kv";
  check_on_device(op, "key", key);
  check_on_device(op, "value", value);
  PD_CHECK(!key_scale && !value_scale, op, ": key_scale / value_scale are a static int8 cache's, which only the ",
           "CPU has (--cachekv_int8_type is CPU-only)");
  const auto ks = key.shape();
  PD_CHECK(ks.size() == 3, op, ": key must be [tokens, num_kv_heads, head_dim], got ", shape_str(ks));
  PD_CHECK(value.shape() == ks, op, ": value must have key's shape ", shape_str(ks), ", got ",
           shape_str(value.shape()));
  HostBatch b = check_batch(op, ks[0], key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  PD_CHECK(ks[1] == b.kv_heads && ks[2] == b.head_dim, op, ": key is ", shape_str(ks), " but the cache holds ",
           b.kv_heads, " kv heads of head_dim ", b.head_dim);
  const paddle::DataType cdt = key_cache.dtype();
  PD_CHECK(cdt == paddle::DataType::FLOAT32 || cdt == paddle::DataType::BFLOAT16 || cdt == paddle::DataType::FLOAT16,
           op, ": caches must be float32, bfloat16 or float16, got ", dtype_str(cdt));
  for (const paddle::Tensor* x : {&key, &value})
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32 || x->dtype() == cdt, op,
             ": key/value must be float32 or the cache's dtype (", dtype_str(cdt), "), got ", dtype_str(x->dtype()));
  if (b.T == 0 || b.kv_heads == 0 || b.head_dim == 0) return;

  const int64_t H = b.kv_heads, rows = b.T * H;
  std::vector<int32_t> idx;
  idx.reserve(static_cast<size_t>(rows) * 3);
  for (int64_t s = 0; s < b.S; ++s) {
    for (int64_t i = 0; i < b.this_time[s]; ++i) {
      const int64_t p = b.decoder[s] + i;
      const int32_t blk = b.tables[s * b.max_blocks + p / b.block_size];
      const int32_t slot = static_cast<int32_t>(p % b.block_size);
      for (int64_t h = 0; h < H; ++h) {
        idx.push_back(blk);
        idx.push_back(static_cast<int32_t>(h));
        idx.push_back(slot);
      }
    }
  }
  const paddle::Tensor indices = to_device(host_tensor(idx, {rows, 3}), key_cache.place());
  scatter_rows(key, key_cache, indices, rows, b.head_dim);
  scatter_rows(value, value_cache, indices, rows, b.head_dim);
}

std::vector<std::vector<int64_t>> NpuWriteCacheKVInferShape(
    const std::vector<int64_t>& key, const std::vector<int64_t>& value, const std::vector<int64_t>& key_cache,
    const std::vector<int64_t>& value_cache, const std::vector<int64_t>& block_tables,
    const std::vector<int64_t>& seq_lens_this_time, const std::vector<int64_t>& seq_lens_decoder,
    const paddle::optional<std::vector<int64_t>>& key_scale, const paddle::optional<std::vector<int64_t>>& value_scale) {
  return {key_cache, value_cache};
}

std::vector<paddle::DataType> NpuWriteCacheKVInferDtype(
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
    .SetKernelFn(PD_KERNEL(NpuWriteCacheKV))
    .SetInferShapeFn(PD_INFER_SHAPE(NpuWriteCacheKVInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NpuWriteCacheKVInferDtype));
