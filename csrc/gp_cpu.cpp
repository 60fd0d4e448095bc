// CPU kernels of the gradient-penalty op: plain loops the compiler vectorizes
// (gp_cpu_loops.h), split over threads with at::parallel_for. Reduced-precision data
// (float16, bfloat16) is widened to float for every sum and product; float64 stays
// float64.
//
// The work split depends only on the shapes (fixed chunks of kChunk elements), never
// on the thread count or the instruction set, so results are bit-for-bit reproducible.
#include "gp_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#define GANTK_CPU_ISA isa_base
#include "gp_cpu_loops.h"
#undef GANTK_CPU_ISA

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GANTK_CPU_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#define GANTK_CPU_ISA isa_avx2
#include "gp_cpu_loops.h"
#undef GANTK_CPU_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// 64-byte vectors where the CPU has AVX-512 (GCC only). AVX-512F brings FMA with it, so
// contraction is switched off to keep the results bit-identical to the copies above.
#if !defined(__clang__)
#define GANTK_CPU_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl")
#pragma GCC optimize("fp-contract=off")
#define GANTK_CPU_ISA isa_avx512
#include "gp_cpu_loops.h"
#undef GANTK_CPU_ISA
#pragma GCC pop_options
#endif
#endif

namespace gantk {
namespace cpu {
namespace {

template <typename T> using AccOf = isa_base::AccOf<T>;

constexpr int64_t kChunk = 16384;  // elements per reduction chunk
constexpr int64_t kGrain = 32768;  // elements per parallel task (elementwise)

// Instruction-set levels: 0 baseline, 1 AVX2, 2 AVX-512. The loops run at the best
// level both this build and the CPU have, or lower when set_isa asks (for tests and
// benchmarks); every level gives the same bits.
int supported_isa() {
  int level = 0;
#ifdef GANTK_CPU_AVX2
  if (__builtin_cpu_supports("avx2")) level = 1;
#endif
#ifdef GANTK_CPU_AVX512
  if (level == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    level = 2;
#endif
  return level;
}

std::atomic<int>& isa_level() {
  static std::atomic<int> level{supported_isa()};
  return level;
}

#if defined(GANTK_CPU_AVX512)
#define GANTK_ISA_CALL(fn, ...)                                          \
  (isa_level().load(std::memory_order_relaxed) == 2   ? isa_avx512::fn(__VA_ARGS__) \
   : isa_level().load(std::memory_order_relaxed) == 1 ? isa_avx2::fn(__VA_ARGS__)   \
                                                      : isa_base::fn(__VA_ARGS__))
#elif defined(GANTK_CPU_AVX2)
#define GANTK_ISA_CALL(fn, ...) \
  (isa_level().load(std::memory_order_relaxed) == 1 ? isa_avx2::fn(__VA_ARGS__) : isa_base::fn(__VA_ARGS__))
#else
#define GANTK_ISA_CALL(fn, ...) isa_base::fn(__VA_ARGS__)
#endif

template <typename A>
inline A active(A nrm, double target, bool one_sided) {
  A d = nrm - static_cast<A>(target);
  return (one_sided && d < A(0)) ? A(0) : d;
}

// Calls fn(row, lo, hi) for the parts of rows that the flat range [begin, end) covers.
template <typename Fn>
inline void for_rows(int64_t begin, int64_t end, int64_t n, Fn&& fn) {
  int64_t row = begin / n;
  int64_t lo = begin;
  while (lo < end) {
    const int64_t hi = std::min(end, (row + 1) * n);
    fn(row, lo, hi);
    lo = hi;
    ++row;
  }
}

}  // namespace

void interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                 const at::Tensor& out, int64_t b, int64_t n) {
  if (b == 0 || n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "gantk_interpolate_cpu", [&] {
    using A = typename AccOf<scalar_t>::type;
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const A* e = eps.const_data_ptr<A>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, b * n, kGrain, [&](int64_t begin, int64_t end) {
      for_rows(begin, end, n, [&](int64_t row, int64_t lo, int64_t hi) {
        GANTK_ISA_CALL(interp_row<scalar_t>, r + lo, f + lo, o + lo, e[row], hi - lo);
      });
    });
  });
}

void norm_penalty(const at::Tensor& g, int64_t b, int64_t n, double target, bool one_sided,
                  double weight, double norm_eps, const at::Tensor& inv_scale,
                  const at::Tensor& penalty, const at::Tensor& norms) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "gantk_norm_penalty_cpu", [&] {
    using A = typename AccOf<scalar_t>::type;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const int64_t chunks = std::max<int64_t>(1, (n + kChunk - 1) / kChunk);
    std::vector<A> partial(static_cast<size_t>(b * chunks));
    const int64_t task_len = std::max<int64_t>(1, std::min(n, kChunk));
    at::parallel_for(0, b * chunks, std::max<int64_t>(1, kGrain / task_len), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t row = t / chunks, c = t - row * chunks;
        const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
        partial[t] = hi > lo ? GANTK_ISA_CALL(sum_squares<scalar_t>, gp + row * n + lo, hi - lo) : A(0);
      }
    });
    A s2 = A(1);
    if (inv_scale.defined()) {
      const A s = *inv_scale.const_data_ptr<A>();
      s2 = s * s;
    }
    A* nr = norms.mutable_data_ptr<A>();
    double total = 0.0;  // B terms: summed in double, then rounded once
    for (int64_t i = 0; i < b; ++i) {
      A sq = A(0);
      for (int64_t c = 0; c < chunks; ++c) sq += partial[i * chunks + c];
      const A nrm = std::sqrt(sq * s2 + static_cast<A>(norm_eps));
      nr[i] = nrm;
      const A d = active(nrm, target, one_sided);
      total += static_cast<double>(d) * static_cast<double>(d);
    }
    *penalty.mutable_data_ptr<A>() = static_cast<A>(weight * total / static_cast<double>(b));
  });
}

void norm_penalty_backward(const at::Tensor& grad_penalty, const at::Tensor& g,
                           const at::Tensor& norms, int64_t b, int64_t n, double target,
                           bool one_sided, double weight, const at::Tensor& inv_scale,
                           const at::Tensor& dg) {
  if (b == 0 || n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "gantk_norm_penalty_backward_cpu", [&] {
    using A = typename AccOf<scalar_t>::type;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const A* nr = norms.const_data_ptr<A>();
    scalar_t* o = dg.mutable_data_ptr<scalar_t>();
    A common = *grad_penalty.const_data_ptr<A>() * static_cast<A>(weight) * A(2) / static_cast<A>(b);
    if (inv_scale.defined()) {
      const A s = *inv_scale.const_data_ptr<A>();
      common *= s * s;
    }
    at::parallel_for(0, b * n, kGrain, [&](int64_t begin, int64_t end) {
      for_rows(begin, end, n, [&](int64_t row, int64_t lo, int64_t hi) {
        const A nrm = nr[row];
        const A coef = nrm > A(0) ? common * active(nrm, target, one_sided) / nrm : A(0);
        GANTK_ISA_CALL(scale_row<scalar_t>, gp + lo, o + lo, coef, hi - lo);
      });
    });
  });
}

int64_t set_isa(int64_t level) {
  const int64_t best = supported_isa();
  const int64_t chosen = level < 0 ? best : std::min(level, best);
  isa_level().store(static_cast<int>(chosen));
  return chosen;
}

int64_t threads_used(int64_t tasks) {
  std::vector<char> seen(static_cast<size_t>(std::max<int64_t>(at::get_num_threads(), 1)), 0);
  at::parallel_for(0, std::max<int64_t>(tasks, 1), 1, [&](int64_t, int64_t) {
    const int64_t t = at::get_thread_num();
    if (t >= 0 && t < static_cast<int64_t>(seen.size())) seen[static_cast<size_t>(t)] = 1;
  });
  return std::count(seen.begin(), seen.end(), 1);
}

}  // namespace cpu
}  // namespace gantk
