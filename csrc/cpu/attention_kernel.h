// Block attention work item: plain C++ shared by the ISA-specific translation units.
// No standard headers here: each attention_<isa>.cc includes what it needs before switching the target.
#pragma once
#include <cstdint>

namespace paddlellm_cpu {

// An int8 cache (--cachekv_int8_type dynamic) is [num_blocks, num_kv_heads, block_size, head_dim + 4] int8: each
// token's row of one head is its head_dim values q then their float32 scale (4 bytes), x ~ q * scale, the scale
// max |x| / 127 of the row, computed as the row is written.
constexpr int64_t kCacheScaleBytes = 4;

enum class CacheType { kFloat32, kBFloat16, kInt8 };

// head_dim of a cache whose rows are `row` elements wide.
inline int64_t cache_head_dim(int64_t row, CacheType type) {
  return type == CacheType::kInt8 ? row - kCacheScaleBytes : row;
}

// Everything a work item reads; filled once per op call by paged_ops.cc.
struct AttnParams {
  const float* q;            // [T, num_heads, head_dim]
  float* out;                // [T, num_heads, head_dim]
  const void* key_cache;     // [num_blocks, num_kv_heads, block_size, head_dim], float or bf16 bits (int8: rows
  const void* value_cache;   // of head_dim + 4, see kCacheScaleBytes)
  CacheType cache_type;
  const int32_t* block_tables;  // [S, max_blocks_per_seq]
  int64_t max_blocks_per_seq;
  int64_t num_blocks;
  int64_t block_size;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  int64_t head_dim_padded;   // head_dim rounded up to the ISA's vector width (scratch row stride)
  float scale;               // 1 / sqrt(head_dim)
};

// One (sequence, kv head, query tile) triple: query tokens [q_row, q_row + q_count) of the packed
// batch, whose first token sits at cache position pos0 of sequence seq.
struct AttnItem {
  int32_t seq;
  int32_t kv_head;
  int64_t q_row;
  int32_t q_count;
  int64_t pos0;
};

// Per-thread scratch, sized by scratch_floats(); 64-byte aligned.
struct AttnScratch {
  float* data;
};

// Floats of scratch one work item needs for rows = q_count * group query rows.
inline int64_t scratch_floats(int64_t rows, int64_t head_dim_padded, int64_t block_size_padded) {
  rows = (rows + 3) / 4 * 4;  // the kernel pads rows to a multiple of 4
  return rows * head_dim_padded * 2         // scaled queries, accumulators
         + rows * block_size_padded         // scores / probabilities of one block
         + rows * 2                         // running max, running sum
         + block_size_padded * head_dim_padded * 2  // one K block and one V block as fp32
         + 64;
}

using AttendFn = void (*)(const AttnParams&, const AttnItem&, float* scratch);

void attend_scalar(const AttnParams& p, const AttnItem& item, float* scratch);
void attend_avx2(const AttnParams& p, const AttnItem& item, float* scratch);
void attend_avx512(const AttnParams& p, const AttnItem& item, float* scratch);

}  // namespace paddlellm_cpu
