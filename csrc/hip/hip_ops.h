// Host entry points of the HIP kernels (defined in the .hip files), called by the Paddle bindings
// (model_ops.cc, paged_ops.cc). Plain C++: no HIP or Paddle types, so the bindings compile with the host
// compiler alone. Every pointer is device memory except where noted; `stream` is the tensor's
// hipStream_t (cudaStream_t under nvcc). Each launcher enqueues its kernels and returns 0, or the
// runtime's error code of the launch (error_string names it). Nothing here synchronizes, except
// read_status.
#pragma once

#include <cstdint>

namespace paddlellm_hip {

// Storage dtype of a cache, norm weight or key/value tensor.
enum Dtype : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

const char* error_string(int code);

// ---------------------------------------------------------------- elementwise layer ops

// out = rms_norm(x (+ residual), weight) per row of `hidden` floats; with residual (non-null) also
// residual_out = x + residual. weight: [hidden] of weight_dtype.
int rms_norm(const float* x, const float* residual, const void* weight, Dtype weight_dtype, float* out,
             float* residual_out, int64_t rows, int64_t hidden, float epsilon, void* stream);

// RoPE in place on q [tokens, q_heads, head_dim] and k [tokens, k_heads, head_dim].
int rotary_embedding(float* q, float* k, const int32_t* positions, const float* inv_freq, int64_t tokens,
                     int64_t q_heads, int64_t k_heads, int64_t head_dim, bool interleaved, void* stream);

// out[r, j] = silu(x[r, j]) * x[r, F + j] for x [rows, 2F].
int swiglu(const float* x, float* out, int64_t rows, int64_t F, void* stream);

// out [M, N] = x [M, K] @ W, W[k, n] = weight[k, n] * scale[k / (K / G), n] (+ offset[k / (K / G), n]);
// weight int8 [K, N] row-major, scale and offset (nullptr: none) float32 [G, N], G >= 1 dividing K.
// M = 0 or N = 0: nothing launched.
int weight_only_linear(const float* x, const int8_t* weight, const float* scale, const float* offset, float* out,
                       int64_t M, int64_t K, int64_t N, int64_t G, void* stream);

// ---------------------------------------------------------------- paged (block) cache ops

// The packed batch of one step, as both cache ops see it.
struct PagedBatch {
  const int32_t* block_tables;        // [S, max_blocks]
  const int32_t* seq_lens_this_time;  // [S]
  const int32_t* seq_lens_decoder;    // [S]
  int64_t T, S, max_blocks, num_blocks, kv_heads, block_size, head_dim;
};

// Workspace the plan kernel fills (int32, device): status[4], cu[S + 1] (exclusive prefix sum of
// seq_lens_this_time), seq_of_row[T] (each packed row's sequence).
inline int64_t plan_workspace_ints(int64_t S, int64_t T) { return 4 + (S + 1) + T; }

// Status codes (status[0]; status[1..3] say where, as below). On any error the consumers do nothing
// (write_cache_kv) or write NaN (block_attention) instead of touching memory the tables point past.
enum Status : int32_t {
  kOk = 0,
  kNegativeLength = 1,  // seq
  kBeyondTable = 2,     // seq, last position (clamped to int32)
  kBadBlock = 3,        // seq, table column, entry
  kTokenCount = 4,      // sum of seq_lens_this_time (clamped to int32)
};

// Validates the batch and fills the workspace (one block; the lengths never leave the device).
int plan_batch(const PagedBatch& b, int32_t* workspace, void* stream);

// Copies status[4] to the host and waits for the stream: the one synchronizing call, used only when
// PADDLELLM_HIP_CHECK=1 asks for host-side errors. host_status is host memory.
int read_status(const int32_t* workspace, int32_t* host_status, void* stream);

// key/value [T, kv_heads, head_dim] of src_dtype (float32 or the cache's) into the cache blocks.
int write_cache_kv(const PagedBatch& b, const int32_t* workspace, const void* src, Dtype src_dtype, void* cache,
                   Dtype cache_dtype, void* stream);

// out [T, num_heads, head_dim] = causal GQA attention of q over the caches (see SPEC.md).
// Returns -1 (nothing launched) when head_dim is too large for the kernel's shared memory.
int block_attention(const PagedBatch& b, const int32_t* workspace, const float* q, int64_t num_heads,
                    const void* key_cache, const void* value_cache, Dtype cache_dtype, float* out, void* stream);

// Largest head_dim block_attention supports (shared memory bound; ~5.9k).
int64_t block_attention_max_head_dim();

// ---------------------------------------------------------------- generation helpers (generation.hip)
// logits [S, V] float32; every other array one value per row [S] unless noted.

// out [S, V] = the penalized logits; pre_ids [S, L] (a row's ids end at its first negative entry), eos [E].
int token_penalty(const float* logits, const int64_t* pre_ids, int64_t L, const float* penalty_scores,
                  const float* frequency_scores, const float* presence_scores, const int64_t* min_len,
                  const int64_t* cur_len, const int64_t* eos, int64_t E, float* out, int64_t S, int64_t V,
                  void* stream);

// ids [S]: each row's greedy id.
int argmax(const float* logits, int64_t S, int64_t V, int64_t* ids, void* stream);

// ids [S]: each row's sampled id, -1 for a row holding NaN or +inf or no finite logit. weights: [S, V] doubles
// of device scratch.
int top_p_sampling(const float* logits, const float* temperature, const int64_t* top_k, const float* top_p,
                   const float* uniform, double* weights, int64_t S, int64_t V, int64_t* ids, void* stream);

// out [S]: stop_flags_in, or next_tokens is one of eos [E], or cur_len + 1 >= max_len.
int stop_flags(const int64_t* next_tokens, const int64_t* eos, int64_t E, const int64_t* cur_len,
               const int64_t* max_len, const bool* stop_flags_in, bool* out, int64_t S, void* stream);

}  // namespace paddlellm_hip
