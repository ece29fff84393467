// Plumbing shared by the npu ops: aclnn entry points resolved by name, tensor descriptors over Paddle
// tensors, the custom device's stream, host <-> device copies of the small int inputs, and the checks of
// the paged-cache inputs. Definitions in npu_common.cc.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "acl/acl.h"
#include "aclnn_decls.h"
#include "paddle/extension.h"
#include "paddle/phi/backends/custom/custom_context.h"

namespace paddlellm_npu {

// ---------------------------------------------------------------- entry points

// The address of `symbol` in libcust_opapi.so, libopapi.so or libnnopbase.so (searched in that order,
// each opened once with dlopen), or nullptr. require() throws one line naming the symbol instead.
void* find_symbol(const char* symbol);
void* require_symbol(const char* symbol);

// The raw aclrtStream of the place's phi::CustomContext: every aclnn call and copy goes there, so they are
// ordered with Paddle's own kernels on the device.
aclrtStream stream_of(const paddle::Place& place);

// Throws "paddlellm npu: <api><stage> failed with aclnn status N: <CANN's message>" when status != 0.
void check_status(const char* api, const char* stage, int64_t status);

// PADDLELLM_NPU_SYNC=1: synchronize the stream after every launch and check it, so an asynchronous device
// error is reported at the op that caused it (debugging only: it serializes host and device).
bool sync_after_launch();
void sync_and_check(const char* api, aclrtStream stream);

// ---------------------------------------------------------------- descriptors

aclDataType acl_dtype(paddle::DataType t);

// An aclTensor over a contiguous Paddle tensor's memory, ND format, owned (destroyed with the holder).
// `shape` may re-view the same memory with another contiguous shape of the same element count.
class AclTensor {
 public:
  AclTensor() = default;
  explicit AclTensor(const paddle::Tensor& t);
  AclTensor(const paddle::Tensor& t, const std::vector<int64_t>& shape);
  AclTensor(const AclTensor&) = delete;
  AclTensor& operator=(const AclTensor&) = delete;
  AclTensor(AclTensor&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  AclTensor& operator=(AclTensor&& o) noexcept;
  ~AclTensor();
  aclTensor* get() const { return p_; }
  aclTensor* release() { return std::exchange(p_, nullptr); }  // for a tensor list, which then owns it

 private:
  aclTensor* p_ = nullptr;
};

// A host int64 array argument (actualSeqLengths ...), owned.
class AclIntArray {
 public:
  explicit AclIntArray(const std::vector<int64_t>& values);
  AclIntArray(const AclIntArray&) = delete;
  AclIntArray& operator=(const AclIntArray&) = delete;
  ~AclIntArray();
  aclIntArray* get() const { return p_; }

 private:
  aclIntArray* p_ = nullptr;
};

// A list of tensor descriptors (the attention ops take K and V as lists); owns them.
class AclTensorList {
 public:
  explicit AclTensorList(std::vector<AclTensor> tensors);
  AclTensorList(const AclTensorList&) = delete;
  AclTensorList& operator=(const AclTensorList&) = delete;
  ~AclTensorList();
  aclTensorList* get() const { return p_; }

 private:
  aclTensorList* p_ = nullptr;
};

// ---------------------------------------------------------------- launching

struct AclnnEntry {
  void* get_workspace_size;
  aclnnLaunch_t launch;
};
// Both calls of `api`, resolved once per name (thread-safe cache); throws if either is missing.
const AclnnEntry& aclnn_entry(const char* api);

// Runs one aclnn operator on the place's stream: GetWorkspaceSize with `args` (checked against the
// prototype API::GetWorkspaceSize at compile time), a workspace from Paddle's allocator for the place,
// then the launch. The workspace tensor is released when this returns, before the device has run the
// operator: Paddle's allocator hands freed blocks to later allocations whose work is queued on the same
// stream, which runs after this operator, so the reuse is ordered (the same contract as PaddleCustomDevice's
// ops; everything here uses the one stream of the place's context).
template <typename API, typename... Args>
void launch(const paddle::Place& place, Args... args) {
  static const AclnnEntry& entry = aclnn_entry(API::name);
  const auto get_ws = reinterpret_cast<typename API::GetWorkspaceSize>(entry.get_workspace_size);
  uint64_t ws_size = 0;
  aclOpExecutor* executor = nullptr;
  check_status(API::name, "GetWorkspaceSize", get_ws(args..., &ws_size, &executor));
  paddle::Tensor workspace;
  void* ws_ptr = nullptr;
  if (ws_size > 0) {
    workspace = paddle::empty({static_cast<int64_t>(ws_size)}, paddle::DataType::UINT8, place);
    ws_ptr = workspace.data();
  }
  const aclrtStream stream = stream_of(place);
  check_status(API::name, "", entry.launch(ws_ptr, ws_size, executor, stream));
  if (sync_after_launch()) sync_and_check(API::name, stream);
}

// ---------------------------------------------------------------- tensors

std::string shape_str(const std::vector<int64_t>& s);
const char* dtype_str(paddle::DataType t);

// `t` must live on the custom device (the npu place).
void check_on_device(const char* op, const char* name, const paddle::Tensor& t);
void check_dtype(const char* op, const char* name, const paddle::Tensor& t, paddle::DataType want);

// t itself when contiguous, else a contiguous copy (descriptors are built with contiguous strides).
paddle::Tensor contiguous(const paddle::Tensor& t);

// A CPU tensor with t's values: t itself when it is on the CPU, else a copy made after the place's stream
// has drained (so it sees what earlier ops wrote). A synchronization point: call these before queuing
// an op's own kernels, not between them.
paddle::Tensor on_host(const paddle::Tensor& t);

// A device copy of a CPU tensor, made after the place's stream has drained; the host buffer may go away
// right after.
paddle::Tensor to_device(const paddle::Tensor& host, const paddle::Place& place);

// A CPU int32/int64 tensor from a host vector.
paddle::Tensor host_tensor(const std::vector<int32_t>& v, const std::vector<int64_t>& shape);

// Device-to-device copy of src's bytes into dst's memory, on the place's stream (dst and src contiguous,
// the same byte size). Used to write results of composite ops back into an in-place op's input.
void copy_into(paddle::Tensor& dst, const paddle::Tensor& src);

// The RMSNorm weight (float32 or bfloat16 [H], on the device) as float32 [H]: itself, or widened on the
// device (exact). aclnnRmsNorm / aclnnAddRmsNorm then see float32 x, gamma and y.
paddle::Tensor norm_weight_f32(const char* op, const paddle::Tensor& weight, int64_t H);

// ---------------------------------------------------------------- paged batches

// The block tables and sequence lengths on the host, checked as the CPU ops check them (SPEC.md): shapes,
// dtypes, lengths >= 0, sum(seq_lens_this_time) == T, every position the step touches has a block-table
// entry in [0, num_blocks).
struct HostBatch {
  int64_t T, S, max_blocks, num_blocks, kv_heads, block_size, head_dim;
  paddle::Tensor tables_host, this_time_host, decoder_host;  // keep the host copies alive
  const int32_t* tables;
  const int32_t* this_time;
  const int32_t* decoder;
};

HostBatch check_batch(const char* op, int64_t T, const paddle::Tensor& key_cache, const paddle::Tensor& value_cache,
                      const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                      const paddle::Tensor& seq_lens_decoder);

}  // namespace paddlellm_npu
