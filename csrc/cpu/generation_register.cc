// The CPU library's generation helpers: the host kernels as they are (generation_ops.h).
#include "generation_ops.h"

PADDLELLM_BUILD_GENERATION_OPS(GenerationTokenPenalty, GenerationArgmax, GenerationTopPSampling, GenerationStopFlags);
