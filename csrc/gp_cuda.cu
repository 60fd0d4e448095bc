// CUDA kernels of the gradient-penalty op. CUDA headers only (see gp_cuda.h).
//
//  interpolate            elementwise, 16-byte vector loads/stores when aligned
//  norm penalty forward   stage 1: (sample, chunk) blocks reduce sum g^2 into a workspace;
//                         stage 2: one thread per sample sums its chunks in order, writes
//                         the norm and block-reduces f(n - k)^2; stage 3 (only when stage 2
//                         needs more than one block) sums the per-block values in order.
//                         No atomics: the result is deterministic.
//  norm penalty backward  elementwise, the per-sample coefficient computed from the norm
//
// Every sum is accumulated in float (double for float64 data).
#include "gp_cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace {

constexpr int kThreads = 256;      // threads per block, every kernel
constexpr int kUnroll = 4;         // vectors in flight per thread (elementwise, stage 1)
constexpr int kVecBytes = 16;

// ---------------------------------------------------------------- types
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_acc(typename AccOf<T>::type x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// VEC elements moved as one 16-byte (or, for VEC == 1, one-element) access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// ---------------------------------------------------------------- row index
// Sample index of a flat vector index: v / vecs_per_row. For indices below 2^31 a
// multiply-high replaces the 64-bit division (Granlund & Montgomery, "Division by
// invariant integers using multiplication", 1994).
struct RowDiv32 {
  uint32_t magic, shift;
  explicit RowDiv32(uint32_t d) {
    shift = 0;
    while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
    const uint64_t one = 1;
    magic = static_cast<uint32_t>(((one << 32) * ((one << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ int64_t operator()(int64_t v) const {
    const uint32_t x = static_cast<uint32_t>(v);
    return static_cast<int64_t>((__umulhi(x, magic) + x) >> shift);
  }
};

struct RowDiv64 {
  int64_t d;
  explicit RowDiv64(int64_t d_) : d(d_) {}
  __device__ __forceinline__ int64_t operator()(int64_t v) const { return v / d; }
};

// ---------------------------------------------------------------- reductions
template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}

// Sum over the block (blockDim.x == kThreads); the result is valid in thread 0.
template <typename A>
__device__ __forceinline__ A block_sum(A x) {
  __shared__ A warp_part[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  if (lane == 0) warp_part[warp] = x;
  __syncthreads();
  x = threadIdx.x < kThreads / 32 ? warp_part[threadIdx.x] : A(0);
  if (warp == 0) x = warp_sum(x);
  return x;
}

template <typename A>
__device__ __forceinline__ A scale_sq(const A* inv_scale) {
  if (inv_scale == nullptr) return A(1);
  const A s = *inv_scale;
  return s * s;
}

// ---------------------------------------------------------------- interpolate
template <typename T, int VEC, typename Div>
__global__ void __launch_bounds__(kThreads)
interpolate_kernel(const T* __restrict__ real, const T* __restrict__ fake,
                   const typename AccOf<T>::type* __restrict__ eps, T* __restrict__ out,
                   int64_t total_vecs, Div row_of) {
  using A = typename AccOf<T>::type;
  using P = Pack<T, VEC>;
  const P* r = reinterpret_cast<const P*>(real);
  const P* f = reinterpret_cast<const P*>(fake);
  P* o = reinterpret_cast<P*>(out);
  const int64_t base = int64_t(blockIdx.x) * kThreads * kUnroll + threadIdx.x;
  P rv[kUnroll], fv[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t v = base + int64_t(u) * kThreads;
    if (v < total_vecs) { rv[u] = r[v]; fv[u] = f[v]; }
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t v = base + int64_t(u) * kThreads;
    if (v < total_vecs) {
      const A e = eps[row_of(v)];
      const A om = A(1) - e;
      P res;
#pragma unroll
      for (int k = 0; k < VEC; ++k) res.v[k] = from_acc<T>(e * to_acc(rv[u].v[k]) + om * to_acc(fv[u].v[k]));
      o[v] = res;
    }
  }
}

// ---------------------------------------------------------------- norm penalty forward
// Stage 1: block (sample, chunk) writes sum of squares of its chunk to partial[block].
// chunk_len is a multiple of VEC, so every chunk starts on a vector boundary.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
sumsq_kernel(const T* __restrict__ g, int64_t n, int64_t chunk_len, int64_t chunks,
             typename AccOf<T>::type* __restrict__ partial) {
  using A = typename AccOf<T>::type;
  using P = Pack<T, VEC>;
  const int64_t blk = blockIdx.x;
  const int64_t row = blk / chunks;
  const int64_t c = blk - row * chunks;
  const int64_t start = c * chunk_len;
  const int64_t end = (start + chunk_len < n) ? start + chunk_len : n;
  const int64_t len_vecs = end > start ? (end - start) / VEC : 0;  // exact: VEC | n, VEC | chunk_len
  const P* p = reinterpret_cast<const P*>(g + row * n + start);
  A acc = A(0);
  int64_t v = threadIdx.x;
  for (; v + int64_t(kUnroll - 1) * kThreads < len_vecs; v += int64_t(kUnroll) * kThreads) {
    P x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x[u] = p[v + int64_t(u) * kThreads];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A a = to_acc(x[u].v[k]);
        acc += a * a;
      }
  }
  for (; v < len_vecs; v += kThreads) {
    const P x = p[v];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const A a = to_acc(x.v[k]);
      acc += a * a;
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blk] = acc;
}

// Stage 2: thread per sample: norm from its chunks (summed in order), and the block's
// sum of f(n - k)^2, written to the penalty directly when there is one block.
template <typename A>
__global__ void __launch_bounds__(kThreads)
norms_kernel(const A* __restrict__ partial, int64_t b, int64_t chunks, A target, bool one_sided,
             A weight, A norm_eps, const A* __restrict__ inv_scale, A* __restrict__ norms,
             A* __restrict__ block_terms, A* __restrict__ penalty) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  A term = A(0);
  if (i < b) {
    A sq = A(0);
    for (int64_t c = 0; c < chunks; ++c) sq += partial[i * chunks + c];
    const A nrm = sqrt(sq * scale_sq(inv_scale) + norm_eps);
    norms[i] = nrm;
    A d = nrm - target;
    if (one_sided && d < A(0)) d = A(0);
    term = d * d;
  }
  term = block_sum(term);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) *penalty = weight * term / A(b);
    else block_terms[blockIdx.x] = term;
  }
}

// Stage 3: penalty = weight * sum(block_terms) / b, one block, fixed summation order.
template <typename A>
__global__ void __launch_bounds__(kThreads)
penalty_kernel(const A* __restrict__ block_terms, int64_t count, int64_t b, A weight,
               A* __restrict__ penalty) {
  A acc = A(0);
  for (int64_t j = threadIdx.x; j < count; j += kThreads) acc += block_terms[j];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *penalty = weight * acc / A(b);
}

// ---------------------------------------------------------------- norm penalty backward
template <typename T, int VEC, typename Div>
__global__ void __launch_bounds__(kThreads)
backward_kernel(const typename AccOf<T>::type* __restrict__ grad_penalty, const T* __restrict__ g,
                const typename AccOf<T>::type* __restrict__ norms, int64_t b, typename AccOf<T>::type target,
                bool one_sided, typename AccOf<T>::type weight,
                const typename AccOf<T>::type* __restrict__ inv_scale, T* __restrict__ dg,
                int64_t total_vecs, Div row_of) {
  using A = typename AccOf<T>::type;
  using P = Pack<T, VEC>;
  const P* gp = reinterpret_cast<const P*>(g);
  P* o = reinterpret_cast<P*>(dg);
  // grad_out * weight * 2 / B * s^2: the same for every sample.
  const A common = *grad_penalty * weight * A(2) / A(b) * scale_sq(inv_scale);
  const int64_t base = int64_t(blockIdx.x) * kThreads * kUnroll + threadIdx.x;
  P gv[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t v = base + int64_t(u) * kThreads;
    if (v < total_vecs) gv[u] = gp[v];
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t v = base + int64_t(u) * kThreads;
    if (v < total_vecs) {
      const A nrm = norms[row_of(v)];
      A d = nrm - target;
      if (one_sided && d < A(0)) d = A(0);
      const A coef = nrm > A(0) ? common * d / nrm : A(0);
      P res;
#pragma unroll
      for (int k = 0; k < VEC; ++k) res.v[k] = from_acc<T>(coef * to_acc(gv[u].v[k]));
      o[v] = res;
    }
  }
}

// ---------------------------------------------------------------- host helpers
const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

template <typename T>
constexpr int vec_of() { return kVecBytes / int(sizeof(T)); }

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) % kVecBytes) == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kMaxGrid = 2147483647;  // gridDim.x limit

// Launch an elementwise kernel over b*n elements in packs of VEC (or of 1 when the
// row length or a pointer does not allow 16-byte accesses).
template <typename T, int VEC, typename Launch>
const char* launch_elementwise(int64_t b, int64_t n, Launch&& launch) {
  const int64_t total_vecs = b * (n / VEC);
  const int64_t vecs_per_row = n / VEC;
  const int64_t blocks = ceil_div(total_vecs, int64_t(kThreads) * kUnroll);
  if (blocks > kMaxGrid) return "gantk: tensor too large for one launch";
  if (total_vecs < (int64_t(1) << 31)) {
    launch(dim3(unsigned(blocks)), total_vecs, RowDiv32(uint32_t(vecs_per_row)));
  } else {
    launch(dim3(unsigned(blocks)), total_vecs, RowDiv64(vecs_per_row));
  }
  return last_error();
}

template <typename T>
const char* interpolate_typed(const void* real, const void* fake, const void* eps, void* out,
                              int64_t b, int64_t n, cudaStream_t stream) {
  using A = typename AccOf<T>::type;
  const T* r = static_cast<const T*>(real);
  const T* f = static_cast<const T*>(fake);
  const A* e = static_cast<const A*>(eps);
  T* o = static_cast<T*>(out);
  constexpr int V = vec_of<T>();
  if (n % V == 0 && aligned(real) && aligned(fake) && aligned(out)) {
    return launch_elementwise<T, V>(b, n, [&](dim3 grid, int64_t total, auto div) {
      interpolate_kernel<T, V><<<grid, kThreads, 0, stream>>>(r, f, e, o, total, div);
    });
  }
  return launch_elementwise<T, 1>(b, n, [&](dim3 grid, int64_t total, auto div) {
    interpolate_kernel<T, 1><<<grid, kThreads, 0, stream>>>(r, f, e, o, total, div);
  });
}

// Chunk length for the (sample, chunk) split: a multiple of VEC, at least
// kMinChunk elements, and short enough to give about 4 blocks per SM in all.
constexpr int64_t kMinChunk = int64_t(kThreads) * kUnroll * 8;

int64_t chunk_len_for(int64_t b, int64_t n, int64_t chunks, int vec) {
  if (chunks <= 1) return n > 0 ? ceil_div(n, vec) * vec : vec;
  return ceil_div(ceil_div(n, chunks), vec) * vec;
}

template <typename T>
const char* norm_penalty_typed(const void* g, int64_t b, int64_t n, double target, bool one_sided,
                               double weight, double norm_eps, const void* inv_scale, void* penalty,
                               void* norms, int64_t chunks, void* workspace, int64_t workspace_len,
                               cudaStream_t stream) {
  using A = typename AccOf<T>::type;
  const T* gp = static_cast<const T*>(g);
  A* ws = static_cast<A*>(workspace);
  const A* s = static_cast<const A*>(inv_scale);
  constexpr int V = vec_of<T>();
  const bool vec = n % V == 0 && aligned(g);
  const int64_t blocks2 = ceil_div(b, kThreads);
  if (chunks < 1 || b * chunks + (blocks2 > 1 ? blocks2 : 0) > workspace_len)
    return "gantk: norm penalty workspace smaller than planned";
  if (b * chunks > kMaxGrid) return "gantk: tensor too large for one launch";
  A* partial = ws;
  A* block_terms = ws + b * chunks;
  if (vec) {
    const int64_t len = chunk_len_for(b, n, chunks, V);
    sumsq_kernel<T, V><<<unsigned(b * chunks), kThreads, 0, stream>>>(gp, n, len, chunks, partial);
  } else {
    const int64_t len = chunk_len_for(b, n, chunks, 1);
    sumsq_kernel<T, 1><<<unsigned(b * chunks), kThreads, 0, stream>>>(gp, n, len, chunks, partial);
  }
  if (const char* err = last_error()) return err;
  norms_kernel<A><<<unsigned(blocks2), kThreads, 0, stream>>>(
      partial, b, chunks, A(target), one_sided, A(weight), A(norm_eps), s, static_cast<A*>(norms),
      block_terms, static_cast<A*>(penalty));
  if (const char* err = last_error()) return err;
  if (blocks2 > 1) {
    penalty_kernel<A><<<1, kThreads, 0, stream>>>(block_terms, blocks2, b, A(weight),
                                                  static_cast<A*>(penalty));
    if (const char* err = last_error()) return err;
  }
  return nullptr;
}

template <typename T>
const char* backward_typed(const void* grad_penalty, const void* g, const void* norms, int64_t b,
                           int64_t n, double target, bool one_sided, double weight,
                           const void* inv_scale, void* dg, cudaStream_t stream) {
  using A = typename AccOf<T>::type;
  const A* go = static_cast<const A*>(grad_penalty);
  const T* gp = static_cast<const T*>(g);
  const A* nr = static_cast<const A*>(norms);
  const A* s = static_cast<const A*>(inv_scale);
  T* o = static_cast<T*>(dg);
  constexpr int V = vec_of<T>();
  if (n % V == 0 && aligned(g) && aligned(dg)) {
    return launch_elementwise<T, V>(b, n, [&](dim3 grid, int64_t total, auto div) {
      backward_kernel<T, V><<<grid, kThreads, 0, stream>>>(go, gp, nr, b, A(target), one_sided,
                                                            A(weight), s, o, total, div);
    });
  }
  return launch_elementwise<T, 1>(b, n, [&](dim3 grid, int64_t total, auto div) {
    backward_kernel<T, 1><<<grid, kThreads, 0, stream>>>(go, gp, nr, b, A(target), one_sided,
                                                          A(weight), s, o, total, div);
  });
}

const char* kBadDtype = "gantk: unsupported dtype code";

}  // namespace

// ---------------------------------------------------------------- launchers
const char* gantk_interpolate_cuda(int dtype, const void* real, const void* fake, const void* eps,
                                   void* out, int64_t b, int64_t n, cudaStream_t stream) {
  if (b <= 0 || n <= 0) return nullptr;  // nothing to do
  switch (dtype) {
    case kGantkF32: return interpolate_typed<float>(real, fake, eps, out, b, n, stream);
    case kGantkF64: return interpolate_typed<double>(real, fake, eps, out, b, n, stream);
    case kGantkF16: return interpolate_typed<__half>(real, fake, eps, out, b, n, stream);
    case kGantkBF16: return interpolate_typed<__nv_bfloat16>(real, fake, eps, out, b, n, stream);
    default: return kBadDtype;
  }
}

const char* gantk_norm_penalty_plan_cuda(int dtype, int64_t b, int64_t n, int device,
                                         int64_t* chunks, int64_t* workspace_len) {
  if (b <= 0) return "gantk: the batch must not be empty";
  int sms = 0;
  const cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  int vec = 1;
  switch (dtype) {
    case kGantkF32: vec = vec_of<float>(); break;
    case kGantkF64: vec = vec_of<double>(); break;
    case kGantkF16: vec = vec_of<__half>(); break;
    case kGantkBF16: vec = vec_of<__nv_bfloat16>(); break;
    default: return kBadDtype;
  }
  // Enough (sample, chunk) blocks to fill the GPU about four times over, but no chunk
  // shorter than kMinChunk elements.
  const int64_t want_blocks = int64_t(sms > 0 ? sms : 1) * 4;
  int64_t c = ceil_div(want_blocks, b);
  const int64_t max_c = n > kMinChunk ? ceil_div(n, kMinChunk) : 1;
  if (c > max_c) c = max_c;
  if (c < 1) c = 1;
  // Recount after rounding the chunk length up to a multiple of the vector width.
  if (c > 1) {
    const int64_t len = chunk_len_for(b, n, c, vec);
    c = ceil_div(n, len);
  }
  const int64_t blocks2 = ceil_div(b, kThreads);
  *chunks = c;
  *workspace_len = b * c + (blocks2 > 1 ? blocks2 : 0);
  return nullptr;
}

const char* gantk_norm_penalty_cuda(int dtype, const void* g, int64_t b, int64_t n, double target,
                                    bool one_sided, double weight, double norm_eps,
                                    const void* inv_scale, void* penalty, void* norms,
                                    int64_t chunks, void* workspace, int64_t workspace_len,
                                    cudaStream_t stream) {
  if (b <= 0) return "gantk: the batch must not be empty";
  switch (dtype) {
#define GANTK_CASE(code, T)                                                                      \
  case code:                                                                                     \
    return norm_penalty_typed<T>(g, b, n, target, one_sided, weight, norm_eps, inv_scale, penalty, \
                                 norms, chunks, workspace, workspace_len, stream);
    GANTK_CASE(kGantkF32, float)
    GANTK_CASE(kGantkF64, double)
    GANTK_CASE(kGantkF16, __half)
    GANTK_CASE(kGantkBF16, __nv_bfloat16)
#undef GANTK_CASE
    default: return kBadDtype;
  }
}

const char* gantk_norm_penalty_backward_cuda(int dtype, const void* grad_penalty, const void* g,
                                             const void* norms, int64_t b, int64_t n,
                                             double target, bool one_sided, double weight,
                                             const void* inv_scale, void* dg,
                                             cudaStream_t stream) {
  if (b <= 0 || n <= 0) return nullptr;  // nothing to do
  switch (dtype) {
#define GANTK_CASE(code, T)                                                                   \
  case code:                                                                                  \
    return backward_typed<T>(grad_penalty, g, norms, b, n, target, one_sided, weight, inv_scale, \
                             dg, stream);
    GANTK_CASE(kGantkF32, float)
    GANTK_CASE(kGantkF64, double)
    GANTK_CASE(kGantkF16, __half)
    GANTK_CASE(kGantkBF16, __nv_bfloat16)
#undef GANTK_CASE
    default: return kBadDtype;
  }
}
