#include "huge_pages.h"

#include <mutex>
#include <set>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux >= 6.1; older headers lack the name
#endif
#endif

namespace paddlellm_cpu {

namespace {

constexpr uintptr_t kHugePage = uintptr_t{1} << 21;

// MADV_HUGEPAGE on [begin, end), then a best-effort synchronous MADV_COLLAPSE; false if the first is refused.
bool advise(uintptr_t begin, uintptr_t end) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (end <= begin) return false;
  void* start = reinterpret_cast<void*>(begin);
  if (madvise(start, end - begin, MADV_HUGEPAGE) != 0) return false;
  madvise(start, end - begin, MADV_COLLAPSE);
  return true;
#else
  return false;
#endif
}

}  // namespace

void prefer_huge_pages(const void* data, size_t bytes) {
  if (bytes < kHugePage) return;
  static std::mutex mutex;
  static std::set<std::pair<const void*, size_t>> advised;
  std::lock_guard<std::mutex> lock(mutex);
  if (!advised.emplace(data, bytes).second) return;
  const uintptr_t first = reinterpret_cast<uintptr_t>(data), last = first + bytes;
  // The 2 MB pages the weight touches (their other bytes are heap memory too); failing that, those wholly inside.
  if (!advise(first & ~(kHugePage - 1), (last + kHugePage - 1) & ~(kHugePage - 1)))
    advise((first + kHugePage - 1) & ~(kHugePage - 1), last & ~(kHugePage - 1));
}

}  // namespace paddlellm_cpu
