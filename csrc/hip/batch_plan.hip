// The packed batch's plan, computed on the device (the sequence lengths live there: no host read per step):
//   cu[s]         exclusive prefix sum of seq_lens_this_time (row of sequence s's first token), cu[S] = total
//   seq_of_row[r] the sequence of packed row r
//   status        the first problem found (hip_ops.h: Status), or kOk
// with SPEC.md's checks: lengths >= 0, every position the step touches has a block-table entry in
// [0, num_blocks), and sum(seq_lens_this_time) == T. One block of threads.
#include "gpu_compat.h"
#include "hip_ops.h"

namespace paddlellm_hip {

constexpr int kPlanThreads = 256;

__device__ int32_t clamp_i32(int64_t v) { return v > INT32_MAX ? INT32_MAX : static_cast<int32_t>(v); }

__device__ void report(int32_t* status, int32_t code, int32_t a, int32_t b, int32_t c) {
  if (atomicCAS(&status[0], 0, code) == 0) {  // the first problem found wins
    status[1] = a;
    status[2] = b;
    status[3] = c;
  }
}

__global__ void plan_kernel(PagedBatch b, int32_t* __restrict__ status, int32_t* __restrict__ cu,
                            int32_t* __restrict__ seq_of_row) {
  extern __shared__ float smem[];
  int64_t* scan = reinterpret_cast<int64_t*>(smem);  // [kPlanThreads] (the launch gives 8 bytes a thread)
  const int tid = threadIdx.x;
  if (tid == 0) status[0] = status[1] = status[2] = status[3] = 0;
  __syncthreads();

  // Checks, one sequence per thread.
  for (int64_t s = tid; s < b.S; s += blockDim.x) {
    const int64_t n = b.seq_lens_this_time[s], past = b.seq_lens_decoder[s];
    if (n < 0 || past < 0) {
      report(status, kNegativeLength, clamp_i32(s), 0, 0);
      continue;
    }
    if (n == 0) continue;
    const int64_t last_block = (past + n - 1) / b.block_size;
    if (last_block >= b.max_blocks) {
      report(status, kBeyondTable, clamp_i32(s), clamp_i32(past + n - 1), 0);
      continue;
    }
    for (int64_t j = 0; j <= last_block; ++j) {
      const int32_t blk = b.block_tables[s * b.max_blocks + j];
      if (blk < 0 || blk >= b.num_blocks) {
        report(status, kBadBlock, clamp_i32(s), clamp_i32(j), blk);
        break;
      }
    }
  }

  // cu: inclusive scan of each chunk of kPlanThreads lengths (Hillis-Steele), plus the chunks before it.
  // Negative lengths count as 0 here (they are reported above), so cu stays non-decreasing.
  int64_t carry = 0;
  if (tid == 0) cu[0] = 0;
  for (int64_t s0 = 0; s0 < b.S; s0 += blockDim.x) {
    const int64_t s = s0 + tid;
    const int32_t n = s < b.S ? b.seq_lens_this_time[s] : 0;
    scan[tid] = n > 0 ? n : 0;
    __syncthreads();
    for (int off = 1; off < static_cast<int>(blockDim.x); off <<= 1) {
      const int64_t add = tid >= off ? scan[tid - off] : 0;
      __syncthreads();
      scan[tid] += add;
      __syncthreads();
    }
    if (s < b.S) cu[s + 1] = clamp_i32(carry + scan[tid]);
    carry += scan[blockDim.x - 1];
    __syncthreads();  // scan is rewritten by the next chunk
  }
  if (carry != b.T) {
    if (tid == 0) report(status, kTokenCount, clamp_i32(carry), 0, 0);
    return;  // the rows do not match the lengths: seq_of_row stays unwritten, consumers see the status
  }
  __syncthreads();  // cu (global memory) complete and visible to the whole block

  // seq_of_row: the s with cu[s] <= r < cu[s + 1] (such s has tokens), by binary search.
  for (int64_t r = tid; r < b.T; r += blockDim.x) {
    int64_t lo = 0, hi = b.S;  // cu[lo] <= r < cu[hi]
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      if (cu[mid] <= r)
        lo = mid;
      else
        hi = mid;
    }
    seq_of_row[r] = static_cast<int32_t>(lo);
  }
}

int plan_batch(const PagedBatch& b, int32_t* workspace, void* stream) {
  hipLaunchKernelGGL(plan_kernel, dim3(1), dim3(kPlanThreads), kPlanThreads * sizeof(int64_t),
                     static_cast<hipStream_t>(stream), b, workspace, workspace + 4, workspace + 4 + b.S + 1);
  return static_cast<int>(hipGetLastError());
}

int read_status(const int32_t* workspace, int32_t* host_status, void* stream) {
  hipStream_t s = static_cast<hipStream_t>(stream);
  hipError_t e = hipMemcpyAsync(host_status, workspace, 4 * sizeof(int32_t), hipMemcpyDeviceToHost, s);
  if (e == hipSuccess) e = hipStreamSynchronize(s);
  return static_cast<int>(e);
}

const char* error_string(int code) { return hipGetErrorString(static_cast<hipError_t>(code)); }

}  // namespace paddlellm_hip
