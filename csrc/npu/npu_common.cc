// Definitions for npu_common.h: dlopen/dlsym of the aclnn libraries, descriptors, copies, batch checks.
#include "npu_common.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

namespace paddlellm_npu {

// ---------------------------------------------------------------- entry points

namespace {

// CANN's operator libraries, searched in this order: custom operators first (as CANN itself does), then
// the built-in operator API library, then the base library that defines aclCreateTensor & friends (which
// libopapi.so also reaches through its own dependencies).
constexpr const char* kLibraries[] = {"libcust_opapi.so", "libopapi.so", "libnnopbase.so"};
constexpr int kNumLibraries = sizeof(kLibraries) / sizeof(kLibraries[0]);

struct Handles {
  void* h[kNumLibraries];
  std::string errors;  // why a library could not be opened, for the error message
  Handles() {
    for (int i = 0; i < kNumLibraries; ++i) {
      h[i] = dlopen(kLibraries[i], RTLD_LAZY | RTLD_LOCAL);
      if (h[i] == nullptr) {
        const char* e = dlerror();
        errors += std::string("; ") + (e ? e : kLibraries[i]);
      }
    }
  }
};

const Handles& handles() {
  static const Handles* hs = new Handles();  // never closed: ops may run until the process exits
  return *hs;
}

}  // namespace

void* find_symbol(const char* symbol) {
  const Handles& hs = handles();
  for (void* h : hs.h) {
    if (h == nullptr) continue;
    if (void* p = dlsym(h, symbol)) return p;
  }
  return nullptr;
}

void* require_symbol(const char* symbol) {
  void* p = find_symbol(symbol);
  if (p == nullptr) {
    const Handles& hs = handles();
    PD_THROW("paddlellm npu: ", symbol,
             " not found in libcust_opapi.so, libopapi.so or libnnopbase.so (CANN 8.0 or newer, with its "
             "set_env.sh sourced so that LD_LIBRARY_PATH reaches them)",
             hs.errors.empty() ? std::string() : " [dlopen" + hs.errors + "]");
  }
  return p;
}

aclrtStream stream_of(const paddle::Place& place) {
  const auto* ctx = static_cast<const phi::CustomContext*>(
      paddle::experimental::DeviceContextPool::Instance().Get(place));
  return reinterpret_cast<aclrtStream>(ctx->stream());
}

void check_status(const char* api, const char* stage, int64_t status) {
  if (status == 0) return;
  const char* msg = aclGetRecentErrMsg();
  PD_THROW("paddlellm npu: ", api, stage, " failed with aclnn status ", status, ": ",
           msg != nullptr ? msg : "(no message from CANN)");
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("PADDLELLM_NPU_SYNC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

void sync_and_check(const char* api, aclrtStream stream) {
  const aclError ret = aclrtSynchronizeStream(stream);
  if (ret != ACL_SUCCESS) {
    const char* msg = aclGetRecentErrMsg();
    PD_THROW("paddlellm npu: ", api, " failed on the device (aclrtSynchronizeStream returned ", ret, "): ",
             msg != nullptr ? msg : "(no message from CANN)");
  }
}

const AclnnEntry& aclnn_entry(const char* api) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, AclnnEntry>();  // node references stay valid
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(api);
  if (it != cache->end()) return it->second;
  const std::string ws_name = std::string(api) + "GetWorkspaceSize";
  AclnnEntry e{require_symbol(ws_name.c_str()), reinterpret_cast<aclnnLaunch_t>(require_symbol(api))};
  return cache->emplace(api, e).first->second;
}

// ---------------------------------------------------------------- descriptors

namespace {

template <typename Fn>
Fn meta_fn(const char* name) {
  return reinterpret_cast<Fn>(require_symbol(name));
}

}  // namespace

aclDataType acl_dtype(paddle::DataType t) {
  switch (t) {
    case paddle::DataType::FLOAT32:
      return ACL_FLOAT;
    case paddle::DataType::FLOAT16:
      return ACL_FLOAT16;
    case paddle::DataType::BFLOAT16:
      return ACL_BF16;
    case paddle::DataType::INT32:
      return ACL_INT32;
    case paddle::DataType::INT64:
      return ACL_INT64;
    case paddle::DataType::INT8:
      return ACL_INT8;
    case paddle::DataType::UINT8:
      return ACL_UINT8;
    case paddle::DataType::BOOL:
      return ACL_BOOL;
    default:
      PD_THROW("paddlellm npu: no ACL dtype for ", dtype_str(t));
  }
}

AclTensor::AclTensor(const paddle::Tensor& t) : AclTensor(t, t.shape()) {}

AclTensor::AclTensor(const paddle::Tensor& t, const std::vector<int64_t>& shape) {
  static const auto create = meta_fn<meta::aclCreateTensor_t>("aclCreateTensor");
  PD_CHECK(t.is_contiguous(), "paddlellm npu: internal error, a descriptor over a non-contiguous tensor");
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  PD_CHECK(numel == t.numel(), "paddlellm npu: internal error, view ", shape_str(shape), " of a tensor ",
           shape_str(t.shape()));
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  p_ = create(shape.data(), shape.size(), acl_dtype(t.dtype()), strides.data(), 0, ACL_FORMAT_ND, shape.data(),
              shape.size(), const_cast<void*>(t.data()));
  PD_CHECK(p_ != nullptr, "paddlellm npu: aclCreateTensor failed for ", shape_str(shape), " ", dtype_str(t.dtype()));
}

AclTensor& AclTensor::operator=(AclTensor&& o) noexcept {
  if (this != &o) {
    AclTensor old(std::move(*this));  // destroys the current descriptor on return
    p_ = std::exchange(o.p_, nullptr);
  }
  return *this;
}

AclTensor::~AclTensor() {
  if (p_ == nullptr) return;
  static const auto destroy = reinterpret_cast<meta::aclDestroyTensor_t>(find_symbol("aclDestroyTensor"));
  if (destroy != nullptr) destroy(p_);
  p_ = nullptr;
}

AclIntArray::AclIntArray(const std::vector<int64_t>& values) {
  static const auto create = meta_fn<meta::aclCreateIntArray_t>("aclCreateIntArray");
  p_ = create(values.data(), values.size());
  PD_CHECK(p_ != nullptr, "paddlellm npu: aclCreateIntArray failed");
}

AclIntArray::~AclIntArray() {
  static const auto destroy = reinterpret_cast<meta::aclDestroyIntArray_t>(find_symbol("aclDestroyIntArray"));
  if (p_ != nullptr && destroy != nullptr) destroy(p_);
}

AclTensorList::AclTensorList(std::vector<AclTensor> tensors) {
  static const auto create = meta_fn<meta::aclCreateTensorList_t>("aclCreateTensorList");
  std::vector<const aclTensor*> raw;
  raw.reserve(tensors.size());
  for (AclTensor& t : tensors) raw.push_back(t.get());
  p_ = create(raw.data(), raw.size());
  PD_CHECK(p_ != nullptr, "paddlellm npu: aclCreateTensorList failed");
  for (AclTensor& t : tensors) t.release();  // the list owns them now
}

AclTensorList::~AclTensorList() {
  static const auto destroy = reinterpret_cast<meta::aclDestroyTensorList_t>(find_symbol("aclDestroyTensorList"));
  if (p_ != nullptr && destroy != nullptr) destroy(p_);
}

// ---------------------------------------------------------------- tensors

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const char* dtype_str(paddle::DataType t) {
  switch (t) {
    case paddle::DataType::FLOAT32:
      return "float32";
    case paddle::DataType::BFLOAT16:
      return "bfloat16";
    case paddle::DataType::FLOAT16:
      return "float16";
    case paddle::DataType::FLOAT64:
      return "float64";
    case paddle::DataType::INT32:
      return "int32";
    case paddle::DataType::INT64:
      return "int64";
    case paddle::DataType::INT8:
      return "int8";
    case paddle::DataType::UINT8:
      return "uint8";
    case paddle::DataType::BOOL:
      return "bool";
    default:
      return "an unsupported dtype";
  }
}

void check_on_device(const char* op, const char* name, const paddle::Tensor& t) {
  PD_CHECK(t.is_custom_device(), op, ": ", name, " must be a tensor on the npu device, got one on ",
           t.place().DebugString());
}

void check_dtype(const char* op, const char* name, const paddle::Tensor& t, paddle::DataType want) {
  PD_CHECK(t.dtype() == want, op, ": ", name, " must be ", dtype_str(want), ", got ", dtype_str(t.dtype()));
}

paddle::Tensor contiguous(const paddle::Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

namespace {

void check_acl(const char* what, aclError ret) {
  if (ret == ACL_SUCCESS) return;
  const char* msg = aclGetRecentErrMsg();
  PD_THROW("paddlellm npu: ", what, " returned ", ret, ": ", msg != nullptr ? msg : "(no message from CANN)");
}

size_t byte_size(const paddle::Tensor& t) { return static_cast<size_t>(t.numel()) * phi::SizeOf(t.dtype()); }

}  // namespace

// Host <-> device copies: drain the place's stream, then a synchronous aclrtMemcpy. Draining first orders
// the copy after everything queued so far (the kernels that wrote a device source, and the last users of
// a freshly allocated device block that the stream-ordered allocator handed back). Paddle's blocking
// Tensor::copy_to is not used: with paddle-custom-npu it is a plain aclrtMemcpy that does not wait for
// the stream. A plain aclrtMemcpy also takes pageable host memory, which CANN's async copies may not.
paddle::Tensor on_host(const paddle::Tensor& t) {
  if (t.is_cpu()) return contiguous(t);
  const paddle::Tensor src = contiguous(t);
  paddle::Tensor host = paddle::empty(src.shape(), src.dtype(), paddle::CPUPlace());
  const size_t bytes = byte_size(src);
  if (bytes == 0) return host;
  check_acl("aclrtSynchronizeStream", aclrtSynchronizeStream(stream_of(src.place())));
  check_acl("aclrtMemcpy (device to host)",
            aclrtMemcpy(host.data(), bytes, src.data(), bytes, ACL_MEMCPY_DEVICE_TO_HOST));
  return host;
}

paddle::Tensor to_device(const paddle::Tensor& host, const paddle::Place& place) {
  PD_CHECK(host.is_cpu(), "paddlellm npu: internal error, to_device of a non-CPU tensor");
  const paddle::Tensor src = contiguous(host);
  paddle::Tensor dev = paddle::empty(src.shape(), src.dtype(), place);
  const size_t bytes = byte_size(src);
  if (bytes == 0) return dev;
  check_acl("aclrtSynchronizeStream", aclrtSynchronizeStream(stream_of(place)));
  check_acl("aclrtMemcpy (host to device)", aclrtMemcpy(dev.data(), bytes, src.data(), bytes, ACL_MEMCPY_HOST_TO_DEVICE));
  return dev;
}

paddle::Tensor host_tensor(const std::vector<int32_t>& v, const std::vector<int64_t>& shape) {
  paddle::Tensor t = paddle::empty(shape, paddle::DataType::INT32, paddle::CPUPlace());
  PD_CHECK(static_cast<int64_t>(v.size()) == t.numel(), "paddlellm npu: internal error, host tensor size");
  std::copy(v.begin(), v.end(), t.data<int32_t>());
  return t;
}

void copy_into(paddle::Tensor& dst, const paddle::Tensor& src) {
  PD_CHECK(dst.is_contiguous() && src.is_contiguous() && dst.numel() == src.numel() && dst.dtype() == src.dtype(),
           "paddlellm npu: internal error, copy_into between different tensors");
  const size_t bytes = byte_size(src);
  if (bytes == 0) return;
  check_acl("aclrtMemcpyAsync (device to device)",
            aclrtMemcpyAsync(dst.data(), bytes, src.data(), bytes, ACL_MEMCPY_DEVICE_TO_DEVICE, stream_of(dst.place())));
}

paddle::Tensor norm_weight_f32(const char* op, const paddle::Tensor& weight, int64_t H) {
  check_on_device(op, "weight", weight);
  PD_CHECK(weight.shape().size() == 1 && weight.shape()[0] == H, op, ": weight must be [", H,
           "] (x's last dim), got ", shape_str(weight.shape()));
  PD_CHECK(weight.dtype() == paddle::DataType::FLOAT32 || weight.dtype() == paddle::DataType::BFLOAT16, op,
           ": weight must be float32 or bfloat16, got ", dtype_str(weight.dtype()));
  if (weight.dtype() == paddle::DataType::FLOAT32) return contiguous(weight);
  return contiguous(paddle::experimental::cast(weight, paddle::DataType::FLOAT32));
}

// ---------------------------------------------------------------- paged batches

HostBatch check_batch(const char* op, int64_t T, const paddle::Tensor& key_cache, const paddle::Tensor& value_cache,
                      const paddle::Tensor& block_tables, const paddle::Tensor& seq_lens_this_time,
                      const paddle::Tensor& seq_lens_decoder) {
  check_on_device(op, "key_cache", key_cache);
  check_on_device(op, "value_cache", value_cache);
  const auto kc = key_cache.shape();
  PD_CHECK(kc.size() == 4, op, ": key_cache must be [num_blocks, num_kv_heads, block_size, head_dim], got ",
           shape_str(kc));
  PD_CHECK(value_cache.shape() == kc, op, ": value_cache must have key_cache's shape ", shape_str(kc), ", got ",
           shape_str(value_cache.shape()));
  PD_CHECK(key_cache.dtype() == value_cache.dtype(), op, ": key_cache and value_cache dtypes differ");
  PD_CHECK(key_cache.is_contiguous() && value_cache.is_contiguous(), op, ": the caches must be contiguous");
  const auto bt = block_tables.shape();
  PD_CHECK(bt.size() == 2 && block_tables.dtype() == paddle::DataType::INT32, op,
           ": block_tables must be int32 [num_seqs, max_blocks_per_seq]");
  HostBatch b;
  b.T = T;
  b.S = bt[0];
  b.max_blocks = bt[1];
  b.num_blocks = kc[0];
  b.kv_heads = kc[1];
  b.block_size = kc[2];
  b.head_dim = kc[3];
  PD_CHECK(seq_lens_this_time.dtype() == paddle::DataType::INT32 && seq_lens_this_time.numel() == b.S, op,
           ": seq_lens_this_time must be int32 [num_seqs]");
  PD_CHECK(seq_lens_decoder.dtype() == paddle::DataType::INT32 && seq_lens_decoder.numel() == b.S, op,
           ": seq_lens_decoder must be int32 [num_seqs]");
  b.tables_host = on_host(block_tables);
  b.this_time_host = on_host(seq_lens_this_time);
  b.decoder_host = on_host(seq_lens_decoder);
  b.tables = b.tables_host.data<int32_t>();
  b.this_time = b.this_time_host.data<int32_t>();
  b.decoder = b.decoder_host.data<int32_t>();
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

}  // namespace paddlellm_npu
