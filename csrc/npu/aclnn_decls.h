// Declarations of the CANN pieces that the ACL runtime headers do not ship: the opaque aclnn types,
// aclCreateTensor & friends (CANN's aclnn/acl_meta.h), and the aclnn operator entry points this library
// calls. Nothing here is linked: every function is resolved by name at run time (npu_common.cc, dlsym in
// libcust_opapi.so, then libopapi.so, then libnnopbase.so), so only the prototypes below must be right.
//
// Written from CANN 8.0's documented signatures (see README.md), not from CANN's own headers, which are
// not available here. Each aclnn operator is two calls:
//   aclnnXxxGetWorkspaceSize(<arguments below>, uint64_t* workspaceSize, aclOpExecutor** executor)
//   aclnnXxx(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor, aclrtStream stream)
#pragma once

#include <cstdint>

#include "acl/acl_base.h"  // aclDataType, aclFormat, aclrtStream (real CANN header)

extern "C" {
typedef struct aclOpExecutor aclOpExecutor;
typedef struct aclTensor aclTensor;
typedef struct aclIntArray aclIntArray;
typedef struct aclTensorList aclTensorList;
typedef int32_t aclnnStatus;  // 0 = success
}

namespace paddlellm_npu {
namespace meta {

// aclnn/acl_meta.h. A tensor descriptor does not own its memory. A tensor list owns the descriptors put
// into it: aclDestroyTensorList destroys them too.
using aclCreateTensor_t = aclTensor* (*)(const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType,
                                         const int64_t* stride, int64_t offset, aclFormat format,
                                         const int64_t* storageDims, uint64_t storageDimsNum, void* tensorData);
using aclDestroyTensor_t = aclnnStatus (*)(const aclTensor* tensor);
using aclCreateIntArray_t = aclIntArray* (*)(const int64_t* value, uint64_t size);
using aclDestroyIntArray_t = aclnnStatus (*)(const aclIntArray* array);
using aclCreateTensorList_t = aclTensorList* (*)(const aclTensor* const* value, uint64_t size);
using aclDestroyTensorList_t = aclnnStatus (*)(const aclTensorList* array);

}  // namespace meta

// The second call, the same for every operator.
using aclnnLaunch_t = aclnnStatus (*)(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                      aclrtStream stream);

// One struct per operator: its name and the prototype of its first call (the arguments before
// workspaceSize and executor). npu_common.h's launch<api::X>(place, args...) resolves both calls by name.
#define PADDLELLM_ACLNN_API(NAME, ...)                                                               \
  struct NAME {                                                                                      \
    static constexpr const char* name = #NAME;                                                       \
    using GetWorkspaceSize = aclnnStatus (*)(__VA_ARGS__, uint64_t * workspaceSize, aclOpExecutor * *executor); \
  };

namespace api {

// y = x * rsqrt(mean(x^2, last dims of gamma's rank) + epsilon) * gamma; rstd float32, x's shape with the
// normalized dims set to 1.
PADDLELLM_ACLNN_API(aclnnRmsNorm, const aclTensor* x, const aclTensor* gamma, double epsilon, const aclTensor* yOut,
                    const aclTensor* rstdOut)

// xOut = x1 + x2; yOut = RmsNorm(xOut) * gamma.
PADDLELLM_ACLNN_API(aclnnAddRmsNorm, const aclTensor* x1, const aclTensor* x2, const aclTensor* gamma,
                    double epsilon, const aclTensor* yOut, const aclTensor* rstdOut, const aclTensor* xOut)

// In place on queryRef and keyRef: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1).
// layout 1 = BSND; all four tensors 4-D, the same dtype, cos/sin (B, S, 1, D); D = 128.
PADDLELLM_ACLNN_API(aclnnApplyRotaryPosEmb, aclTensor* queryRef, aclTensor* keyRef, const aclTensor* cos,
                    const aclTensor* sin, int64_t layout)

// out = silu(A) * B, A and B the first and second halves of x along dim.
PADDLELLM_ACLNN_API(aclnnSwiGlu, const aclTensor* x, int64_t dim, const aclTensor* out)

// y = x @ ((weight + antiquantOffset) * antiquantScale) (+ bias), x (m, k) and y (m, n) float16/bfloat16,
// weight int8 (k, n) ND; antiquantScale/antiquantOffset x's dtype, (n,) per channel (antiquantGroupSize 0) or
// (ceil(k / group), n) per group (antiquantGroupSize = group, a multiple of 32 in [32, k - 1]); quantScale,
// quantOffset (output quantization) and bias may be null. k and n in [1, 65535], m >= 1.
PADDLELLM_ACLNN_API(aclnnWeightQuantBatchMatmulV2, const aclTensor* x, const aclTensor* weight,
                    const aclTensor* antiquantScale, const aclTensor* antiquantOffset, const aclTensor* quantScale,
                    const aclTensor* quantOffset, const aclTensor* bias, int antiquantGroupSize, const aclTensor* y)

// varRef[indices[i]] = updates[i] (indices int32/int64 [N, k], updates [N, varRef.shape[k:]]), in place.
PADDLELLM_ACLNN_API(aclnnScatterNdUpdate, aclTensor* varRef, const aclTensor* indices, const aclTensor* updates)

// Decode attention (query S = 1), paged KV when blocktable is given. actualSeqLengths: KV length per batch.
PADDLELLM_ACLNN_API(aclnnIncreFlashAttentionV4, const aclTensor* query, const aclTensorList* key,
                    const aclTensorList* value, const aclTensor* pseShift, const aclTensor* attenMask,
                    const aclIntArray* actualSeqLengths, const aclTensor* dequantScale1,
                    const aclTensor* quantScale1, const aclTensor* dequantScale2, const aclTensor* quantScale2,
                    const aclTensor* quantOffset2, const aclTensor* antiquantScale,
                    const aclTensor* antiquantOffset, const aclTensor* blocktable, const aclTensor* kvPaddingSize,
                    int64_t numHeads, double scaleValue, char* inputLayout, int64_t numKeyValueHeads,
                    int64_t blockSize, int64_t innerPrecise, const aclTensor* attentionOut)

// Prompt + decode attention (Atlas A2). Query S > 1 takes the PromptFlashAttention branch, S = 1 the
// IncreFlashAttention one.
PADDLELLM_ACLNN_API(aclnnFusedInferAttentionScore, const aclTensor* query, const aclTensorList* key,
                    const aclTensorList* value, const aclTensor* pseShift, const aclTensor* attenMask,
                    const aclIntArray* actualSeqLengths, const aclIntArray* actualSeqLengthsKv,
                    const aclTensor* deqScale1, const aclTensor* quantScale1, const aclTensor* deqScale2,
                    const aclTensor* quantScale2, const aclTensor* quantOffset2, const aclTensor* antiquantScale,
                    const aclTensor* antiquantOffset, const aclTensor* blockTable,
                    const aclTensor* queryPaddingSize, const aclTensor* kvPaddingSize, int64_t numHeads,
                    double scaleValue, int64_t preTokens, int64_t nextTokens, char* inputLayout,
                    int64_t numKeyValueHeads, int64_t sparseMode, int64_t innerPrecise, int64_t blockSize,
                    int64_t antiquantMode, bool softmaxLseFlag, const aclTensor* attentionOut,
                    const aclTensor* softmaxLse)

}  // namespace api

#undef PADDLELLM_ACLNN_API

}  // namespace paddlellm_npu
