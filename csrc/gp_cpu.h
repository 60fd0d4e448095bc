// CPU kernels of the gradient-penalty op (gp_cpu.cpp). Inputs are already checked and
// laid out by the binding (gp_ops.cpp): the data tensor is one dense block with sample i
// at elements [i*n, (i+1)*n); eps, norms, grad_penalty and inv_scale are contiguous in
// the accumulation dtype (float64 for float64 data, float32 otherwise).
#pragma once

#include <ATen/core/Tensor.h>

namespace gantk {
namespace cpu {

void interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                 const at::Tensor& out, int64_t b, int64_t n);

// inv_scale: undefined tensor for scale 1.
void norm_penalty(const at::Tensor& g, int64_t b, int64_t n, double target, bool one_sided,
                  double weight, double norm_eps, const at::Tensor& inv_scale,
                  const at::Tensor& penalty, const at::Tensor& norms);

void norm_penalty_backward(const at::Tensor& grad_penalty, const at::Tensor& g,
                           const at::Tensor& norms, int64_t b, int64_t n, double target,
                           bool one_sided, double weight, const at::Tensor& inv_scale,
                           const at::Tensor& dg);

// Caps the instruction set of the loops at `level` (0 baseline, 1 AVX2, 2 AVX-512; -1:
// the best this CPU has) and returns the level now in use. Every level gives the same
// bits; this is for the tests that check that, and for benchmarks.
int64_t set_isa(int64_t level);

// How many distinct threads at::parallel_for hands work to here, over `tasks` tasks of
// one element each: 1 when this file was built without OpenMP (at::parallel_for then
// runs serially), up to torch's thread count otherwise. For the build test.
int64_t threads_used(int64_t tasks);

}  // namespace cpu
}  // namespace gantk
