// Launchers of the gradient-penalty CUDA kernels (gp_cuda.cu).
//
// This header and gp_cuda.cu use CUDA headers only (no torch): raw device pointers,
// sizes and a cudaStream_t, so `nvcc -c gp_cuda.cu` compile-checks the kernels on a
// machine without torch's CUDA headers or a GPU. The torch binding (gp_ops.cpp)
// includes it only when built with CUDA (GANTK_WITH_CUDA).
//
// Conventions shared by every launcher:
//  * the data tensor of B samples is one dense block; sample i occupies elements
//    [i*n, (i+1)*n) (contiguous or channels_last: the batch dimension is outermost);
//  * `dtype` is a GantkDtype; "acc" below means double for kGantkF64, float otherwise:
//    eps, inv_scale, grad_penalty, norms, penalty and the workspace hold acc values;
//  * every pointer is a device pointer on the current device; inv_scale may be null
//    (scale 1);
//  * the return value is nullptr on success, else a static error string (from
//    cudaGetErrorString, or a short message) that the caller turns into an exception.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

enum GantkDtype : int {
  kGantkF32 = 0,
  kGantkF64 = 1,
  kGantkF16 = 2,
  kGantkBF16 = 3,
};

// out = eps[i]*real + (1 - eps[i])*fake per sample; b*n elements of `dtype`.
const char* gantk_interpolate_cuda(int dtype, const void* real, const void* fake, const void* eps,
                                   void* out, int64_t b, int64_t n, cudaStream_t stream);

// Plans the norm-penalty forward: how many chunks each sample is split into (so that
// small batches of large samples still fill the GPU) and how many acc elements of
// workspace the launch needs. Deterministic for a given (b, n, device).
const char* gantk_norm_penalty_plan_cuda(int dtype, int64_t b, int64_t n, int device,
                                         int64_t* chunks, int64_t* workspace_len);

// One pass over g: norms[i] = sqrt(inv_scale^2 * sum_j g_ij^2 + norm_eps) and
// penalty[0] = weight * mean_i f(norms[i] - target)^2, f = identity or max(0, .).
// `chunks` and `workspace` (workspace_len acc elements) come from the plan above.
const char* gantk_norm_penalty_cuda(int dtype, const void* g, int64_t b, int64_t n, double target,
                                    bool one_sided, double weight, double norm_eps,
                                    const void* inv_scale, void* penalty, void* norms,
                                    int64_t chunks, void* workspace, int64_t workspace_len,
                                    cudaStream_t stream);

// One pass: dg_ij = grad_penalty * weight * 2 f(n_i - target) / (b n_i) * inv_scale^2 * g_ij
// (0 where n_i == 0).
const char* gantk_norm_penalty_backward_cuda(int dtype, const void* grad_penalty, const void* g,
                                             const void* norms, int64_t b, int64_t n,
                                             double target, bool one_sided, double weight,
                                             const void* inv_scale, void* dg,
                                             cudaStream_t stream);
