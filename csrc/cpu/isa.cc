#include "isa.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <cstdlib>
#include <string>

#include "paddle/extension.h"

namespace paddlellm_cpu {

static const char* kIsaNames[] = {"scalar", "avx2", "avx512"};

// GCC's __builtin_cpu_supports also checks that the OS enables the AVX / AVX-512 register state (XCR0). Other
// CPUs (an Ascend host's aarch64, built into the npu library for the generation helpers) run the scalar code.
bool isa_supported(int isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case kScalar:
      return true;
    case kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == kScalar;
#endif
}

bool has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  return isa_supported(kAvx512) && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

static bool has_avx_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  return isa_supported(kAvx2) && __builtin_cpu_supports("avxvnni");
#else
  return false;
#endif
}

AvxVnni avx_vnni_kernels() {
  const char* env = std::getenv("PADDLELLM_CPU_AVXVNNI");
  const std::string choice = env == nullptr || env[0] == '\0' ? "auto" : env;
  if (choice == "emulated") return AvxVnni::kEmulated;
  PD_CHECK(choice == "auto" || choice == "off", "PADDLELLM_CPU_AVXVNNI=", choice,
           " is not one of auto, off, emulated");
  return choice == "auto" && has_avx_vnni() ? AvxVnni::kOn : AvxVnni::kOff;
}

int select_isa() {
  const char* env = std::getenv("PADDLELLM_CPU_ISA");
  if (env == nullptr || env[0] == '\0' || std::string(env) == "auto") {
    for (int isa = kAvx512; isa > kScalar; --isa)
      if (isa_supported(isa)) return isa;
    return kScalar;
  }
  for (int isa = kScalar; isa <= kAvx512; ++isa)
    if (std::string(env) == kIsaNames[isa]) return isa_supported(isa) ? isa : -2;
  return -1;
}

int checked_isa() {
  int isa = select_isa();
  PD_CHECK(isa != -1, "PADDLELLM_CPU_ISA=", std::getenv("PADDLELLM_CPU_ISA"),
           " is not one of auto, avx512, avx2, scalar");
  PD_CHECK(isa != -2, "PADDLELLM_CPU_ISA=", std::getenv("PADDLELLM_CPU_ISA"),
           " but this CPU does not support it (unset it to choose automatically)");
  return isa;
}

}  // namespace paddlellm_cpu

// Introspection for Python (ctypes): the ISA the next call would use (0 scalar, 1 avx2, 2 avx512; -1 unknown
// name, -2 unsupported), whether the CPU runs an ISA, and the OpenMP threads a parallel call would use.
extern "C" int paddlellm_cpu_isa(void) { return paddlellm_cpu::select_isa(); }
extern "C" int paddlellm_cpu_isa_supported(int isa) { return paddlellm_cpu::isa_supported(isa) ? 1 : 0; }
extern "C" int paddlellm_cpu_has_avx_vnni(void) { return paddlellm_cpu::has_avx_vnni() ? 1 : 0; }
#if defined(_OPENMP)
extern "C" int paddlellm_cpu_num_threads(void) { return omp_get_max_threads(); }
#else
extern "C" int paddlellm_cpu_num_threads(void) { return 1; }
#endif
