// Which instruction set the kernels use: chosen per call from the CPU's features, or forced by
// PADDLELLM_CPU_ISA=scalar|avx2|avx512 (an error if the CPU lacks it). Every kernel is compiled once per
// ISA in kernels_<isa>.cc; the library has no global -m flags, so nothing else uses those instructions.
#pragma once

namespace paddlellm_cpu {

enum Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kIsaWidth[] = {1, 8, 16};  // floats a vector register holds

bool isa_supported(int isa);
// The ISA for this call: PADDLELLM_CPU_ISA if set (read every call, so tests can switch), else the best.
// Returns -1 for an unknown name, -2 for a name the CPU cannot run.
int select_isa();
// select_isa(), with a one-line error (PD_CHECK) instead of a negative code.
int checked_isa();
// AVX-512 with byte dot products (avx512bw, avx512vnni): the avx512 level's int4 linear kernels use them.
bool has_avx512_vnni();
// The avx2 level's int4 / a8w8 linear kernels: plain AVX2 (pmaddubsw), AVX-VNNI's (VEX vpdpbusd, where the CPU has
// avxvnni), or AVX-VNNI's with the instruction emulated. PADDLELLM_CPU_AVXVNNI=auto (default) | off | emulated
// (read every call, so checks can switch; emulated lets a CPU without AVX-VNNI check those kernels).
enum class AvxVnni { kOff, kOn, kEmulated };
AvxVnni avx_vnni_kernels();

}  // namespace paddlellm_cpu
