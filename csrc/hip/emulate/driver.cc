// C entry points over the launchers of hip_ops.h, for run.py (ctypes). Host pointers stand in for device ones.
#include "hip/hip_runtime.h"
#include "hip_ops.h"

using namespace paddlellm_hip;

static PagedBatch batch(const int32_t* tables, const int32_t* this_time, const int32_t* decoder, long T, long S,
                        long max_blocks, long num_blocks, long kv_heads, long block_size, long head_dim) {
  PagedBatch b;
  b.block_tables = tables;
  b.seq_lens_this_time = this_time;
  b.seq_lens_decoder = decoder;
  b.T = T;
  b.S = S;
  b.max_blocks = max_blocks;
  b.num_blocks = num_blocks;
  b.kv_heads = kv_heads;
  b.block_size = block_size;
  b.head_dim = head_dim;
  return b;
}

#define BATCH_ARGS                                                                                          \
  const int32_t *tables, const int32_t *this_time, const int32_t *decoder, long T, long S, long max_blocks, \
      long num_blocks, long kv_heads, long block_size, long head_dim
#define BATCH batch(tables, this_time, decoder, T, S, max_blocks, num_blocks, kv_heads, block_size, head_dim)

extern "C" {
void emu_set_warp_size(int w) { emu::warp_size = w; }
int emu_rms_norm(const float* x, const float* residual, const void* w, int wd, float* out, float* residual_out,
                 long rows, long H, float eps) {
  return rms_norm(x, residual, w, static_cast<Dtype>(wd), out, residual_out, rows, H, eps, nullptr);
}
int emu_rotary(float* q, float* k, const int32_t* pos, const float* inv_freq, long T, long hq, long hk, long D,
               int interleaved) {
  return rotary_embedding(q, k, pos, inv_freq, T, hq, hk, D, interleaved != 0, nullptr);
}
int emu_swiglu(const float* x, float* out, long rows, long F) { return swiglu(x, out, rows, F, nullptr); }
int emu_weight_only_linear(const float* x, const int8_t* weight, const float* scale, const float* offset, float* out,
                           long M, long K, long N, long G) {
  return weight_only_linear(x, weight, scale, offset, out, M, K, N, G, nullptr);
}
int emu_plan(BATCH_ARGS, int32_t* ws) { return plan_batch(BATCH, ws, nullptr); }
int emu_write(BATCH_ARGS, const int32_t* ws, const void* src, int sd, void* cache, int cd) {
  return write_cache_kv(BATCH, ws, src, static_cast<Dtype>(sd), cache, static_cast<Dtype>(cd), nullptr);
}
int emu_token_penalty(const float* logits, const int64_t* pre_ids, long L, const float* penalty, const float* frequency,
                      const float* presence, const int64_t* min_len, const int64_t* cur_len, const int64_t* eos,
                      long E, float* out, long S, long V) {
  return token_penalty(logits, pre_ids, L, penalty, frequency, presence, min_len, cur_len, eos, E, out, S, V,
                       nullptr);
}
int emu_argmax(const float* logits, long S, long V, int64_t* ids) { return argmax(logits, S, V, ids, nullptr); }
int emu_top_p_sampling(const float* logits, const float* temperature, const int64_t* top_k, const float* top_p,
                       const float* uniform, double* weights, long S, long V, int64_t* ids) {
  return top_p_sampling(logits, temperature, top_k, top_p, uniform, weights, S, V, ids, nullptr);
}
int emu_stop_flags(const int64_t* next, const int64_t* eos, long E, const int64_t* cur_len, const int64_t* max_len,
                   const bool* before, bool* out, long S) {
  return stop_flags(next, eos, E, cur_len, max_len, before, out, S, nullptr);
}
int emu_attention(BATCH_ARGS, const int32_t* ws, const float* q, long H, const void* kc, const void* vc, int cd,
                  float* out) {
  return block_attention(BATCH, ws, q, H, kc, vc, static_cast<Dtype>(cd), out, nullptr);
}
}
