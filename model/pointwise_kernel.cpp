// Fused pointwise kernels; see pointwise_kernel.h. Built with -O3 -ffp-contract=off
// -fno-trapping-math and without the precompiled header (model/CMakeLists.txt).
#include "model/pointwise_kernel.h"

#include <cmath>
#include <cstring>

#include "model/simd.h"  // defines: Vec, Lanes, exp_poly, load, store, round_bf16, kLanes

namespace ringtune {

namespace {

using namespace simd;

// m <= W values at p as one vector (the missing lanes 0), and back.
template <int W, typename T>
RINGTUNE_INLINE typename Vec<W>::f load_n(const T* p, int64_t m) {
  if (m == W) return load<W>(p);
  T buf[W] = {};
  std::memcpy(buf, p, static_cast<size_t>(m) * sizeof(T));
  return load<W>(buf);
}
template <int W, typename T>
RINGTUNE_INLINE void store_n(T* p, typename Vec<W>::f v, int64_t m) {
  if (m == W) return store<W>(p, v);
  T buf[W];
  store<W>(buf, v);
  std::memcpy(p, buf, static_cast<size_t>(m) * sizeof(T));
}
// Rounded as stored in T (a no-op for float32).
template <int W, typename T>
RINGTUNE_INLINE typename Vec<W>::f as_stored(typename Vec<W>::f v) {
  if constexpr (sizeof(T) == 2) return round_bf16<W>(v);
  return v;
}

// The sum over a row of f(chunk at j, lanes in it) in 16 logical lanes, added in lane order in
// double. f returns P = 16 / W vectors through `out`; lanes past the row's end must be 0.
template <int W, typename F>
RINGTUNE_INLINE double row_sum(int64_t d, F f) {
  constexpr int P = kLanes / W;
  auto acc = Lanes<W>::all(0.0f);
  for (int64_t j = 0; j < d; j += kLanes) {
    for (int p = 0; p < P; ++p) {
      const int64_t at = j + p * W;
      const int64_t m = at >= d ? 0 : (d - at < W ? d - at : W);
      acc.v[p] += m ? f(at, m) : splat<W>(0.0f);
    }
  }
  return acc.sum();
}

template <int W, typename T>
RINGTUNE_INLINE void rms_norm_rows(const T* x, const T* w, T* y, float* rstd, int64_t d, float eps, int64_t r0,
                                   int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    const double ss = row_sum<W>(d, [&](int64_t j, int64_t m) {
      const auto v = load_n<W>(xr + j, m);
      return v * v;
    });
    const float rs = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
    rstd[r] = rs;
    for (int64_t j = 0; j < d; j += W) {
      const int64_t m = d - j < W ? d - j : W;
      const auto n = as_stored<W, T>(load_n<W>(xr + j, m) * rs);
      store_n<W>(yr + j, load_n<W>(w + j, m) * n, m);
    }
  }
}

template <int W, typename T>
RINGTUNE_INLINE void rms_norm_backward_rows(const T* x, const T* w, const float* rstd, const T* g, T* dx, float* dw,
                                            int64_t d, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * d;
    const T* gr = g + r * d;
    T* dxr = dx + r * d;
    const float rs = rstd[r];
    const double dot = row_sum<W>(d, [&](int64_t j, int64_t m) {
      return (load_n<W>(gr + j, m) * load_n<W>(w + j, m)) * (load_n<W>(xr + j, m) * rs);
    });
    const float c = static_cast<float>(dot / static_cast<double>(d));
    for (int64_t j = 0; j < d; j += W) {
      const int64_t m = d - j < W ? d - j : W;
      const auto gv = load_n<W>(gr + j, m);
      const auto n = load_n<W>(xr + j, m) * rs;
      store_n<W>(dxr + j, (gv * load_n<W>(w + j, m) - n * c) * rs, m);
      if (dw) store_n<W>(dw + j, load_n<W>(dw + j, m) + gv * as_stored<W, T>(n), m);
    }
  }
}

template <int W, typename T>
RINGTUNE_INLINE void rope_rows(bool backward, const T* x, const float* cos, const float* sin, T* y, int64_t hd,
                               int64_t heads, int64_t r0, int64_t r1) {
  const int64_t h = hd / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * hd;
    T* yr = y + r * hd;
    const float* c = cos + (r / heads) * hd;
    const float* s = sin + (r / heads) * hd;
    for (int64_t j = 0; j < h; j += W) {
      const int64_t m = h - j < W ? h - j : W;
      const auto x1 = load_n<W>(xr + j, m), x2 = load_n<W>(xr + h + j, m);
      const auto c1 = as_stored<W, T>(load_n<W>(c + j, m)), c2 = as_stored<W, T>(load_n<W>(c + h + j, m));
      const auto s1 = as_stored<W, T>(load_n<W>(s + j, m)), s2 = as_stored<W, T>(load_n<W>(s + h + j, m));
      if (!backward) {
        store_n<W>(yr + j, x1 * c1 - x2 * s1, m);
        store_n<W>(yr + h + j, x2 * c2 + x1 * s2, m);
      } else {
        store_n<W>(yr + j, x1 * c1 + x2 * s2, m);
        store_n<W>(yr + h + j, x2 * c2 - x1 * s1, m);
      }
    }
  }
}

template <int W>
RINGTUNE_INLINE typename Vec<W>::f sigmoid(typename Vec<W>::f g) {
  return 1.0f / (1.0f + exp_poly<W>(-g));
}

template <int W, typename T>
RINGTUNE_INLINE void swiglu_values(const T* g, const T* u, T* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += W) {
    const int64_t m = i1 - i < W ? i1 - i : W;
    const auto gv = load_n<W>(g + i, m);
    store_n<W>(y + i, as_stored<W, T>(gv * sigmoid<W>(gv)) * load_n<W>(u + i, m), m);
  }
}

template <int W, typename T>
RINGTUNE_INLINE void swiglu_backward_values(const T* go, const T* g, const T* u, T* dg, T* du, int64_t i0,
                                            int64_t i1) {
  for (int64_t i = i0; i < i1; i += W) {
    const int64_t m = i1 - i < W ? i1 - i : W;
    const auto ov = load_n<W>(go + i, m), gv = load_n<W>(g + i, m), uv = load_n<W>(u + i, m);
    const auto s = sigmoid<W>(gv);
    store_n<W>(du + i, ov * as_stored<W, T>(gv * s), m);
    store_n<W>(dg + i, (ov * uv) * (s * (1.0f + gv * (1.0f - s))), m);
  }
}

// The dtype switch: T is float (float32) or uint16_t (bfloat16 bits).
template <int W>
struct Kernels {
  template <typename T>
  static const T* c(const void* p) {
    return static_cast<const T*>(p);
  }
  template <typename T>
  static T* m(void* p) {
    return static_cast<T*>(p);
  }
  RINGTUNE_INLINE static void rms_norm(bool bf16, const void* x, const void* w, void* y, float* rstd, int64_t d,
                                       float eps, int64_t r0, int64_t r1) {
    if (bf16) rms_norm_rows<W>(c<uint16_t>(x), c<uint16_t>(w), m<uint16_t>(y), rstd, d, eps, r0, r1);
    else rms_norm_rows<W>(c<float>(x), c<float>(w), m<float>(y), rstd, d, eps, r0, r1);
  }
  RINGTUNE_INLINE static void rms_norm_backward(bool bf16, const void* x, const void* w, const float* rstd,
                                                const void* g, void* dx, float* dw, int64_t d, int64_t r0, int64_t r1) {
    if (bf16)
      rms_norm_backward_rows<W>(c<uint16_t>(x), c<uint16_t>(w), rstd, c<uint16_t>(g), m<uint16_t>(dx), dw, d, r0, r1);
    else rms_norm_backward_rows<W>(c<float>(x), c<float>(w), rstd, c<float>(g), m<float>(dx), dw, d, r0, r1);
  }
  RINGTUNE_INLINE static void rope(bool bf16, bool backward, const void* x, const float* cos, const float* sin,
                                   void* y, int64_t hd, int64_t heads, int64_t r0, int64_t r1) {
    if (bf16) rope_rows<W>(backward, c<uint16_t>(x), cos, sin, m<uint16_t>(y), hd, heads, r0, r1);
    else rope_rows<W>(backward, c<float>(x), cos, sin, m<float>(y), hd, heads, r0, r1);
  }
  RINGTUNE_INLINE static void swiglu(bool bf16, const void* g, const void* u, void* y, int64_t i0, int64_t i1) {
    if (bf16) swiglu_values<W>(c<uint16_t>(g), c<uint16_t>(u), m<uint16_t>(y), i0, i1);
    else swiglu_values<W>(c<float>(g), c<float>(u), m<float>(y), i0, i1);
  }
  RINGTUNE_INLINE static void swiglu_backward(bool bf16, const void* go, const void* g, const void* u, void* dg,
                                              void* du, int64_t i0, int64_t i1) {
    if (bf16)
      swiglu_backward_values<W>(c<uint16_t>(go), c<uint16_t>(g), c<uint16_t>(u), m<uint16_t>(dg), m<uint16_t>(du), i0,
                                i1);
    else swiglu_backward_values<W>(c<float>(go), c<float>(g), c<float>(u), m<float>(dg), m<float>(du), i0, i1);
  }
};

// The same source compiled for each instruction set.
#define RINGTUNE_VARIANT(NAME, W, ATTR)                                                                              \
  ATTR void rms_norm_##NAME(bool bf16, const void* x, const void* w, void* y, float* rstd, int64_t d, float eps,     \
                            int64_t r0, int64_t r1) {                                                                \
    Kernels<W>::rms_norm(bf16, x, w, y, rstd, d, eps, r0, r1);                                                       \
  }                                                                                                                  \
  ATTR void rms_norm_backward_##NAME(bool bf16, const void* x, const void* w, const float* rstd, const void* g,      \
                                     void* dx, float* dw, int64_t d, int64_t r0, int64_t r1) {                       \
    Kernels<W>::rms_norm_backward(bf16, x, w, rstd, g, dx, dw, d, r0, r1);                                           \
  }                                                                                                                  \
  ATTR void rope_##NAME(bool bf16, bool backward, const void* x, const float* cos, const float* sin, void* y,        \
                        int64_t hd, int64_t heads, int64_t r0, int64_t r1) {                                         \
    Kernels<W>::rope(bf16, backward, x, cos, sin, y, hd, heads, r0, r1);                                             \
  }                                                                                                                  \
  ATTR void swiglu_##NAME(bool bf16, const void* g, const void* u, void* y, int64_t i0, int64_t i1) {                \
    Kernels<W>::swiglu(bf16, g, u, y, i0, i1);                                                                       \
  }                                                                                                                  \
  ATTR void swiglu_backward_##NAME(bool bf16, const void* go, const void* g, const void* u, void* dg, void* du,      \
                                   int64_t i0, int64_t i1) {                                                         \
    Kernels<W>::swiglu_backward(bf16, go, g, u, dg, du, i0, i1);                                                     \
  }                                                                                                                  \
  PointwiseVariant variant_##NAME() {                                                                                \
    return {#NAME, rms_norm_##NAME, rms_norm_backward_##NAME, rope_##NAME, swiglu_##NAME, swiglu_backward_##NAME}; \
  }
RINGTUNE_VARIANT(baseline, 4, )
#if defined(__x86_64__) && defined(__GNUC__)
RINGTUNE_VARIANT(avx2, 8, __attribute__((target("avx2"))))
RINGTUNE_VARIANT(avx512f, 16, __attribute__((target("avx512f"))))
#endif
#undef RINGTUNE_VARIANT

}  // namespace

std::vector<PointwiseVariant> pointwise_variants() {
  std::vector<PointwiseVariant> out;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) out.push_back(variant_avx512f());
  if (__builtin_cpu_supports("avx2")) out.push_back(variant_avx2());
#endif
  out.push_back(variant_baseline());
  return out;
}

const PointwiseVariant& pointwise_kernels() {
  static const PointwiseVariant v = pointwise_variants().front();
  return v;
}

}  // namespace ringtune
