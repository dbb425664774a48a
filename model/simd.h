// Vector arithmetic shared by the CPU kernels that are compiled once per instruction set
// (src/train/xent_kernel.cpp, model/pointwise_kernel.cpp): GCC/Clang vector types of the native
// width W (16 float32 lanes for AVX-512, 8 for AVX2, 4 for baseline x86-64), loads and stores of
// float32 and bfloat16, and an exponential. No libtorch. A file that includes it is built with
// -ffp-contract=off, so every lane computes the same sequence of IEEE operations whatever W is.
// defines: RINGTUNE_INLINE, simd::Vec, simd::splat, simd::exp_poly, simd::load, simd::store,
//          simd::round_bf16, simd::scalar, simd::Lanes, simd::kLanes
#pragma once
#include <cstdint>
#include <cstring>

#define RINGTUNE_INLINE inline __attribute__((always_inline))

namespace ringtune {
namespace simd {

// Sums run over 16 logical float32 lanes held as 16 / W vectors of the instruction set's native
// width W (16 for AVX-512, 8 for AVX2, 4 for the baseline), as GCC/Clang vector types: lane l of
// every sum is the same sequence of IEEE operations whatever W is.
constexpr int kLanes = 16;

template <int W>
struct Vec;
template <>
struct Vec<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef uint32_t u __attribute__((vector_size(64)));
  typedef uint16_t h __attribute__((vector_size(32)));
};
template <>
struct Vec<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef uint32_t u __attribute__((vector_size(32)));
  typedef uint16_t h __attribute__((vector_size(16)));
};
template <>
struct Vec<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef uint32_t u __attribute__((vector_size(16)));
  typedef uint16_t h __attribute__((vector_size(8)));
};

template <int W>
RINGTUNE_INLINE typename Vec<W>::f splat(float v) {
  typename Vec<W>::f r = {};
  return r + v;
}

// exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 (ln 2 split in two parts, exact first
// product), exp(r) by Cephes' expf polynomial on |r| <= ln 2 / 2 (about 1 ulp). k is rounded by
// adding 1.5 * 2^23, whose low mantissa bits then hold it: no float-to-integer conversion, and
// NaN stays NaN. Below -87.3 (results under the smallest normal float32) it returns 0.
template <int W>
RINGTUNE_INLINE typename Vec<W>::f exp_poly(typename Vec<W>::f x) {
  using F = typename Vec<W>::f;
  using U = typename Vec<W>::u;
  const auto tiny = x < -87.3f;  // below the smallest normal float32: 0
  x = tiny ? splat<W>(-87.3f) : x;
  x = x > 88.3f ? splat<W>(88.3f) : x;
  const F shifted = x * 1.44269504088896341f + 12582912.0f;
  const F k = shifted - 12582912.0f;
  F r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  F p = splat<W>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const U ki = (U)shifted - 0x4B400000u;  // k, two's complement
  const U scale = (ki + 127u) << 23;
  p = p * (F)scale;
  return tiny ? splat<W>(0.0f) : p;
}

template <int W>
RINGTUNE_INLINE typename Vec<W>::f load(const float* x) {
  typename Vec<W>::f v;
  std::memcpy(&v, x, sizeof v);
  return v;
}
template <int W>
RINGTUNE_INLINE typename Vec<W>::f load(const uint16_t* x) {
  typename Vec<W>::h h;
  std::memcpy(&h, x, sizeof h);
  const typename Vec<W>::u u = __builtin_convertvector(h, typename Vec<W>::u) << 16;
  return (typename Vec<W>::f)u;
}
template <int W>
RINGTUNE_INLINE void store(float* x, typename Vec<W>::f v) {
  std::memcpy(x, &v, sizeof v);
}
// Round to nearest even, NaN to the quiet NaN (as c10::BFloat16 does).
template <int W>
RINGTUNE_INLINE void store(uint16_t* x, typename Vec<W>::f v) {
  using U = typename Vec<W>::u;
  const U u = (U)v;
  U r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  r = v != v ? (r - r) + 0x7FC0u : r;
  const typename Vec<W>::h h = __builtin_convertvector(r, typename Vec<W>::h);
  std::memcpy(x, &h, sizeof h);
}

// x rounded to the nearest bfloat16 (even on ties), kept as float32.
template <int W>
RINGTUNE_INLINE typename Vec<W>::f round_bf16(typename Vec<W>::f v) {
  using U = typename Vec<W>::u;
  const U u = (U)v;
  const U r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  return v != v ? v : (typename Vec<W>::f)r;
}

RINGTUNE_INLINE float scalar(float x) { return x; }
RINGTUNE_INLINE float scalar(uint16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// 16 logical lanes.
template <int W>
struct Lanes {
  static constexpr int P = kLanes / W;
  typename Vec<W>::f v[P];
  static Lanes all(float x) {
    Lanes a;
    for (int p = 0; p < P; ++p) a.v[p] = splat<W>(x);
    return a;
  }
  double sum() const {  // in lane order, in double
    double s = 0;
    for (int p = 0; p < P; ++p)
      for (int l = 0; l < W; ++l) s += v[p][l];
    return s;
  }
};

}  // namespace simd
}  // namespace ringtune
