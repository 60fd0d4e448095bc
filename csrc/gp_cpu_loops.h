// Inner loops of the CPU kernels (gp_cpu.cpp), included up to three times there: for
// the baseline instruction set and, on x86-64, under `#pragma GCC target("avx2")` and
// (GCC) `target("avx512f,avx512bw,avx512vl")`, so that one build runs everywhere and
// uses 32- or 64-byte vectors where the CPU has them. All copies give bit-identical
// results: no FMA contraction, and every reduction keeps a fixed set of kLanes partial
// sums whatever the vector width.
//
// No include guard on purpose; the includer defines GANTK_CPU_ISA (the namespace name).
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>

#ifndef GANTK_CPU_ISA
#error "define GANTK_CPU_ISA before including gp_cpu_loops.h"
#endif

namespace gantk {
namespace cpu {
namespace GANTK_CPU_ISA {

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// ---------------------------------------------------------------- conversions
// Branch-free widening/narrowing of bfloat16 and float16 (round to nearest even, as
// torch does), written with integer selects so that the loops below vectorize; the
// c10 conversions compile to scalar code without -mf16c.
inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// c ? a : b with masks, so that the compiler emits no branch (it will not if-convert a
// ?: whose arms hold float arithmetic).
inline uint32_t select(bool c, uint32_t a, uint32_t b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return (a & m) | (b & ~m);
}

template <typename T> struct Cvt {  // float, double: plain casts
  using A = typename AccOf<T>::type;
  static inline A load(T x) { return static_cast<A>(x); }
  static inline T store(A x) { return static_cast<T>(x); }
};

template <> struct Cvt<c10::BFloat16> {
  // bfloat16 is the upper half of a float.
  static inline float load(c10::BFloat16 x) { return float_of(static_cast<uint32_t>(x.x) << 16); }
  static inline c10::BFloat16 store(float f) {
    const uint32_t u = bits_of(f);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  // ties to even; overflow -> inf
    const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    const uint16_t h = static_cast<uint16_t>(select(nan, (u >> 16) | 0x0040u, rounded));  // keep NaN quiet
    return c10::BFloat16(h, c10::BFloat16::from_bits());
  }
};

template <> struct Cvt<c10::Half> {
  // half: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
  static inline float load(c10::Half x) {
    const uint32_t h = x.x;
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t em = h & 0x7FFFu;  // exponent and mantissa
    const uint32_t normal = (em << 13) + (112u << 23);                        // rebias 15 -> 127
    const uint32_t sub = bits_of(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);  // exponent 0
    const uint32_t special = (em << 13) | 0x7F800000u;                       // exponent 31: inf, NaN
    const uint32_t e = em >> 10;
    return float_of(sign | select(e == 0, sub, select(e == 31, special, normal)));
  }
  static inline c10::Half store(float f) {
    const uint32_t u = bits_of(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7FFFFFFFu;
    // normal range (|f| >= 2^-14): rebias 127 -> 15 and round the 13 dropped bits
    const uint32_t r = a - (112u << 23);
    const uint32_t normal = (r + 0x0FFFu + ((r >> 13) & 1u)) >> 13;
    // below 2^-14: the mantissa is |f|·2^24 rounded to an integer; adding 2^23 makes the
    // float unit do that rounding (to nearest even)
    const uint32_t sub = bits_of(float_of(a) * 0x1p24f + 0x1p23f) - 0x4B000000u;
    uint32_t h = select(a < 0x38800000u, sub, normal);
    h = select(a >= 0x477FF000u, 0x7C00u, h);  // rounds to or beyond 65520: inf
    h = select(a > 0x7F800000u, 0x7E00u, h);   // NaN
    return c10::Half(static_cast<uint16_t>(sign | h), c10::Half::from_bits());
  }
};

constexpr int kLanes = 16;  // independent partial sums: lets the compiler vectorize
                            // the reduction without reassociating it

template <typename T, typename A = typename AccOf<T>::type>
inline A sum_squares(const T* p, int64_t len) {
  A lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A v = Cvt<T>::load(p[j + k]);
      lane[k] += v * v;
    }
  }
  A s = A(0);
  for (; j < len; ++j) {
    const A v = Cvt<T>::load(p[j]);
    s += v * v;
  }
  for (int k = 0; k < kLanes; ++k) s += lane[k];
  return s;
}

// o[j] = w·r[j] + (1 − w)·f[j] for one row segment
template <typename T, typename A = typename AccOf<T>::type>
inline void interp_row(const T* __restrict r, const T* __restrict f, T* __restrict o, A w, int64_t len) {
  const A om = A(1) - w;
  for (int64_t j = 0; j < len; ++j) o[j] = Cvt<T>::store(w * Cvt<T>::load(r[j]) + om * Cvt<T>::load(f[j]));
}

// o[j] = c·g[j] for one row segment
template <typename T, typename A = typename AccOf<T>::type>
inline void scale_row(const T* __restrict g, T* __restrict o, A c, int64_t len) {
  for (int64_t j = 0; j < len; ++j) o[j] = Cvt<T>::store(c * Cvt<T>::load(g[j]));
}

}  // namespace GANTK_CPU_ISA
}  // namespace cpu
}  // namespace gantk
