// CPU custom ops for paged (block) KV caches:
//   paddlellm_write_cache_kv  write this step's K/V rows into their cache blocks, in place
//   paddlellm_block_attention attention of a packed batch over the block tables (causal, GQA)
//   paddlellm_packed_positions each row's position in its sequence, each sequence's last row
// Semantics: paddlellm/ops/SPEC.md. The attention kernel is compiled per ISA (kernels_<isa>.cc, see isa.h).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "attention_kernel.h"
#include "isa.h"
#include "op_kernels.h"
#include "paddle/extension.h"

namespace paddlellm_cpu {

static uint16_t float_to_bf16_bits(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

CacheType cache_type(const paddle::Tensor& cache) {
  switch (cache.dtype()) {
    case paddle::DataType::BFLOAT16: return CacheType::kBFloat16;
    case paddle::DataType::INT8: return CacheType::kInt8;
    default: return CacheType::kFloat32;
  }
}

// Shapes and dtypes shared by both ops; block ids checked for every position the step touches.
struct Batch {
  int64_t T, S, max_blocks, num_blocks, kv_heads, block_size, head_dim;
  CacheType cache;
  const int32_t* tables;
  const int32_t* this_time;
  const int32_t* decoder;
};

static Batch check_batch(const char* op, int64_t T, const paddle::Tensor& key_cache,
                         const paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                         const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder) {
  for (const paddle::Tensor* t : {&key_cache, &value_cache, &block_tables, &seq_lens_this_time, &seq_lens_decoder})
    PD_CHECK(t->is_cpu(), op, ": every input must be a CPU tensor");
  auto kc = key_cache.shape();
  PD_CHECK(kc.size() == 4, op, ": key_cache must be [num_blocks, num_kv_heads, block_size, head_dim]");
  PD_CHECK(value_cache.shape() == kc, op, ": value_cache must have key_cache's shape");
  PD_CHECK(key_cache.dtype() == value_cache.dtype(), op, ": key_cache and value_cache dtypes differ");
  PD_CHECK(key_cache.dtype() == paddle::DataType::FLOAT32 || key_cache.dtype() == paddle::DataType::BFLOAT16 ||
               key_cache.dtype() == paddle::DataType::INT8,
           op, ": caches must be float32, bfloat16 or int8 (rows of head_dim + 4: values, then their scale)");
  const CacheType type = cache_type(key_cache);
  PD_CHECK(type != CacheType::kInt8 || kc[3] > kCacheScaleBytes, op, ": an int8 cache's rows hold head_dim values ",
           "and a 4-byte scale, so its last dimension must exceed 4");
  auto bt = block_tables.shape();
  PD_CHECK(bt.size() == 2 && block_tables.dtype() == paddle::DataType::INT32, op,
           ": block_tables must be int32 [num_seqs, max_blocks_per_seq]");
  Batch b{T, bt[0], bt[1], kc[0], kc[1], kc[2], cache_head_dim(kc[3], type), type, block_tables.data<int32_t>(),
          nullptr, nullptr};
  PD_CHECK(seq_lens_this_time.dtype() == paddle::DataType::INT32 && seq_lens_this_time.numel() == b.S, op,
           ": seq_lens_this_time must be int32 [num_seqs]");
  PD_CHECK(seq_lens_decoder.dtype() == paddle::DataType::INT32 && seq_lens_decoder.numel() == b.S, op,
           ": seq_lens_decoder must be int32 [num_seqs]");
  b.this_time = seq_lens_this_time.data<int32_t>();
  b.decoder = seq_lens_decoder.data<int32_t>();
  int64_t total = 0;
  for (int64_t s = 0; s < b.S; ++s) {
    const int64_t n = b.this_time[s], past = b.decoder[s];
    PD_CHECK(n >= 0 && past >= 0, op, ": negative sequence length at sequence ", s);
    total += n;
    if (n == 0) continue;
    const int64_t last_block = (past + n - 1) / b.block_size;
    PD_CHECK(last_block < b.max_blocks, op, ": sequence ", s, " reaches position ", past + n - 1,
             ", beyond its block table (", b.max_blocks, " blocks of ", b.block_size, ")");
    for (int64_t j = 0; j <= last_block; ++j) {
      const int64_t blk = b.tables[s * b.max_blocks + j];
      PD_CHECK(blk >= 0 && blk < b.num_blocks, op, ": block_tables[", s, "][", j, "] = ", blk,
               " is not a block of the cache (", b.num_blocks, " blocks)");
    }
  }
  PD_CHECK(total == T, op, ": seq_lens_this_time sums to ", total, " but the batch has ", T, " tokens");
  return b;
}

}  // namespace paddlellm_cpu

using namespace paddlellm_cpu;

// ---------------------------------------------------------------- write_cache_kv

// An int8 cache row (attention_kernel.h): q = round(x / scale) (as x * (1 / scale), to nearest even), then the
// scale's 4 bytes. Dynamic (static_scale 0): scale = max |x| / 127, the row's own. Static (--cachekv_int8_type
// static): the head's calibrated scale, values beyond 127 * scale clamped to +-127.
static void quantize_row(const float* in, int64_t D, float static_scale, int8_t* out) {
  float scale = static_scale;
  if (scale > 0.f) {
    const float inverse = 1.f / scale;
    constexpr float kMagic = 12582912.f;  // rounds as quantize_int8_values does
    for (int64_t d = 0; d < D; ++d)
      out[d] = static_cast<int8_t>((std::min(std::max(in[d] * inverse, -127.f), 127.f) + kMagic) - kMagic);
  } else {
    scale = quantize_int8_values(in, D, out);
  }
  std::memcpy(out + D, &scale, sizeof scale);
}

// head_scales: the static scale of each kv head (int8 caches), or null (dynamic).
template <typename Src, typename Dst>
static void write_rows(const Batch& b, const Src* src, const float* head_scales, Dst* cache) {
  const int64_t H = b.kv_heads, D = b.head_dim;
  const int64_t row_size = std::is_same<Dst, int8_t>::value ? D + kCacheScaleBytes : D;
  std::vector<int64_t> seq_of(b.T), pos_of(b.T);
  for (int64_t s = 0, row = 0; s < b.S; ++s)
    for (int64_t i = 0; i < b.this_time[s]; ++i, ++row) {
      seq_of[row] = s;
      pos_of[row] = b.decoder[s] + i;
    }
#pragma omp parallel for if (b.T * H * D > (1 << 16))
  for (int64_t row = 0; row < b.T; ++row) {
    const int64_t p = pos_of[row];
    const int64_t blk = b.tables[seq_of[row] * b.max_blocks + p / b.block_size];
    for (int64_t h = 0; h < H; ++h) {
      const Src* in = src + (row * H + h) * D;
      Dst* out = cache + ((blk * H + h) * b.block_size + p % b.block_size) * row_size;
      if constexpr (std::is_same<Src, Dst>::value) {
        std::memcpy(out, in, D * sizeof(Dst));
      } else if constexpr (std::is_same<Dst, int8_t>::value) {
        quantize_row(in, D, head_scales ? head_scales[h] : 0.f, out);
      } else {
        for (int64_t d = 0; d < D; ++d) out[d] = float_to_bf16_bits(in[d]);
      }
    }
  }
}

static void write_one(const Batch& b, const paddle::Tensor& x, const float* head_scales, paddle::Tensor& cache) {
  if (b.cache == CacheType::kInt8) {
    write_rows(b, x.data<float>(), head_scales, cache.data<int8_t>());
  } else if (x.dtype() == cache.dtype() && x.dtype() == paddle::DataType::FLOAT32) {
    write_rows(b, x.data<float>(), nullptr, cache.data<float>());
  } else if (x.dtype() == cache.dtype()) {  // bfloat16 into bfloat16: raw bits
    write_rows(b, static_cast<const uint16_t*>(x.data()), nullptr, static_cast<uint16_t*>(cache.data()));
  } else {
    write_rows(b, x.data<float>(), nullptr, static_cast<uint16_t*>(cache.data()));
  }
}

// A static int8 cache's per-head scales: float32 [num_kv_heads], positive and finite; null when absent.
static const float* static_scales(const char* op, const char* name, const paddle::optional<paddle::Tensor>& scale,
                                  const Batch& b) {
  if (!scale) return nullptr;
  PD_CHECK(b.cache == CacheType::kInt8, op, ": ", name, " is a static int8 cache's scale, but the cache is not int8");
  PD_CHECK(scale->is_cpu() && scale->dtype() == paddle::DataType::FLOAT32 && scale->numel() == b.kv_heads, op, ": ",
           name, " must be float32 [num_kv_heads] (", b.kv_heads, ") on the CPU");
  const float* values = scale->data<float>();
  for (int64_t h = 0; h < b.kv_heads; ++h)
    PD_CHECK(std::isfinite(values[h]) && values[h] > 0.f, op, ": ", name, "[", h, "] = ", values[h],
             " is not a positive scale");
  return values;
}

void WriteCacheKV(const paddle::Tensor& key, const paddle::Tensor& value, paddle::Tensor& key_cache,
                  paddle::Tensor& value_cache, const paddle::Tensor& block_tables,
                  const paddle::Tensor& seq_lens_this_time, const paddle::Tensor& seq_lens_decoder,
                  const paddle::optional<paddle::Tensor>& key_scale,
                  const paddle::optional<paddle::Tensor>& value_scale) {
  const char* op = "paddlellm_write_cache_kv";
  PD_CHECK(key.is_cpu() && value.is_cpu(), op, ": key and value must be CPU tensors");
  auto ks = key.shape();
  PD_CHECK(ks.size() == 3, op, ": key must be [tokens, num_kv_heads, head_dim]");
  PD_CHECK(value.shape() == ks, op, ": value must have key's shape");
  Batch b = check_batch(op, ks[0], key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  PD_CHECK(ks[1] == b.kv_heads && ks[2] == b.head_dim, op, ": key is [", ks[0], ", ", ks[1], ", ", ks[2],
           "] but the cache holds ", b.kv_heads, " kv heads of head_dim ", b.head_dim);
  for (const paddle::Tensor* x : {&key, &value})
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32 || (b.cache != CacheType::kInt8 && x->dtype() == key_cache.dtype()),
             op, ": key/value must be float32 or the (float) cache's dtype");
  PD_CHECK(bool(key_scale) == bool(value_scale), op, ": key_scale and value_scale come together (a static int8 cache)");
  const float* k_scales = static_scales(op, "key_scale", key_scale, b);
  const float* v_scales = static_scales(op, "value_scale", value_scale, b);
  if (b.T == 0) return;
  write_one(b, key, k_scales, key_cache);
  write_one(b, value, v_scales, value_cache);
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
  auto out = paddle::empty(q.shape(), paddle::DataType::FLOAT32, q.place());
  BlockAttentionInto(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder, out);
  return {out};
}

void BlockAttentionInto(const paddle::Tensor& q, const paddle::Tensor& key_cache, const paddle::Tensor& value_cache,
                        const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                        const paddle::Tensor& seq_lens_decoder, paddle::Tensor& out) {
  const char* op = "paddlellm_block_attention";
  PD_CHECK(q.is_cpu() && q.dtype() == paddle::DataType::FLOAT32, op, ": q must be a float32 CPU tensor");
  auto qs = q.shape();
  PD_CHECK(qs.size() == 3, op, ": q must be [tokens, num_heads, head_dim]");
  Batch b = check_batch(op, qs[0], key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder);
  PD_CHECK(qs[2] == b.head_dim, op, ": q has head_dim ", qs[2], " but the cache ", b.head_dim);
  PD_CHECK(qs[1] % b.kv_heads == 0, op, ": num_heads ", qs[1], " is not a multiple of num_kv_heads ", b.kv_heads);
  const int isa = checked_isa();
  if (b.T == 0) return;

  AttnParams p;
  p.q = q.data<float>();
  p.out = out.data<float>();
  p.key_cache = key_cache.data();
  p.value_cache = value_cache.data();
  p.cache_type = b.cache;
  p.block_tables = b.tables;
  p.max_blocks_per_seq = b.max_blocks;
  p.num_blocks = b.num_blocks;
  p.block_size = b.block_size;
  p.num_heads = qs[1];
  p.num_kv_heads = b.kv_heads;
  p.head_dim = b.head_dim;
  const int64_t W = kIsaWidth[isa];
  p.head_dim_padded = (b.head_dim + W - 1) / W * W;
  p.scale = 1.f / std::sqrt(static_cast<float>(b.head_dim));

  // Work items: (sequence, kv head, tile of query tokens); a tile holds ~16 query rows (tokens x group).
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t tile = std::max<int64_t>(1, 16 / group);
  std::vector<AttnItem> items;
  for (int64_t s = 0, row = 0; s < b.S; row += b.this_time[s], ++s)
    for (int64_t h = 0; h < b.kv_heads; ++h)
      for (int64_t i = 0; i < b.this_time[s]; i += tile)
        items.push_back(AttnItem{static_cast<int32_t>(s), static_cast<int32_t>(h), row + i,
                                 static_cast<int32_t>(std::min<int64_t>(tile, b.this_time[s] - i)),
                                 b.decoder[s] + i});
  const AttendFn fn = isa == kAvx512 ? attend_avx512 : isa == kAvx2 ? attend_avx2 : attend_scalar;
  const int64_t bsp = (b.block_size + W - 1) / W * W;
  const int64_t need = scratch_floats(tile * group, p.head_dim_padded, bsp);
  const int64_t n = static_cast<int64_t>(items.size());
  // Items are handed out by an atomic counter (dynamic balance) rather than schedule(dynamic): the
  // library links Paddle's libiomp5, which lacks GCC's nonmonotonic-dynamic loop entry points.
  std::atomic<int64_t> next(0);
#pragma omp parallel if (n > 1)
  {
    thread_local std::vector<float> scratch;
    if (static_cast<int64_t>(scratch.size()) < need) scratch.resize(need);
    for (int64_t i = next++; i < n; i = next++) fn(p, items[i], scratch.data());
  }
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

// Where each row of the packed batch sits (SPEC.md): positions [T] (seq_lens_decoder[s] + the row's index
// within sequence s) and last_rows [S] (each sequence's last row, inclusive prefix sum - 1). What the step
// otherwise computes from a dozen small ops (cumsum, arange, repeat_interleave, ...).
std::vector<paddle::Tensor> PackedPositions(const paddle::Tensor& input_ids, const paddle::Tensor& seq_lens_this_time,
                                            const paddle::Tensor& seq_lens_decoder) {
  const char* op = "paddlellm_packed_positions";
  PD_CHECK(input_ids.shape().size() == 1 && seq_lens_this_time.shape().size() == 1 &&
               seq_lens_decoder.shape() == seq_lens_this_time.shape(),
           op, ": input_ids must be [T], seq_lens_this_time and seq_lens_decoder both [S]");
  PD_CHECK(seq_lens_this_time.dtype() == paddle::DataType::INT32 && seq_lens_decoder.dtype() == paddle::DataType::INT32,
           op, ": seq_lens_this_time and seq_lens_decoder must be int32");
  const int64_t T = input_ids.shape()[0], S = seq_lens_this_time.shape()[0];
  const int32_t* lengths = seq_lens_this_time.data<int32_t>();
  const int32_t* cached = seq_lens_decoder.data<int32_t>();
  int64_t total = 0;
  for (int64_t s = 0; s < S; ++s) {
    PD_CHECK(lengths[s] >= 0 && cached[s] >= 0, op, ": sequence ", s, " has a negative length");
    total += lengths[s];
  }
  PD_CHECK(total == T, op, ": seq_lens_this_time sums to ", total, " but input_ids has ", T, " tokens");
  auto positions = paddle::empty({T}, paddle::DataType::INT32, paddle::CPUPlace());
  auto last_rows = paddle::empty({S}, paddle::DataType::INT32, paddle::CPUPlace());
  int32_t* position = positions.data<int32_t>();
  int32_t* last = last_rows.data<int32_t>();
  int32_t row = 0;
  for (int64_t s = 0; s < S; ++s) {
    for (int32_t i = 0; i < lengths[s]; ++i) position[row + i] = cached[s] + i;
    row += lengths[s];
    last[s] = row - 1;
  }
  return {positions, last_rows};
}

std::vector<std::vector<int64_t>> PackedPositionsInferShape(const std::vector<int64_t>& input_ids,
                                                            const std::vector<int64_t>& seq_lens_this_time,
                                                            const std::vector<int64_t>& seq_lens_decoder) {
  return {input_ids, seq_lens_this_time};
}

std::vector<paddle::DataType> PackedPositionsInferDtype(const paddle::DataType& input_ids,
                                                        const paddle::DataType& seq_lens_this_time,
                                                        const paddle::DataType& seq_lens_decoder) {
  return {paddle::DataType::INT32, paddle::DataType::INT32};
}

PD_BUILD_OP(paddlellm_packed_positions)
    .Inputs({"input_ids", "seq_lens_this_time", "seq_lens_decoder"})
    .Outputs({"positions", "last_rows"})
    .SetKernelFn(PD_KERNEL(PackedPositions))
    .SetInferShapeFn(PD_INFER_SHAPE(PackedPositionsInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(PackedPositionsInferDtype));
