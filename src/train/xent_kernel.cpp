// Fused cross-entropy gradient over rows of logits; see xent_kernel.h.
// Built with -O3 -ffp-contract=off -fno-trapping-math and without the precompiled header
// (src/CMakeLists.txt); the arithmetic is written on vector types, so the compiler never reorders
// a sum.
#include "src/train/xent_kernel.h"

#include "model/simd.h"  // defines: Vec, Lanes, exp_poly, load, store, kLanes

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace ringtune {

namespace {

using namespace simd;

// Lanes are summed into a double every this many values, so the float sums stay short.
constexpr int64_t kSumBlock = 512;

// The last V % 16 values go through the same vector code, copied into a padded row of -inf:
// nothing to the max, exp(-inf - m) = 0 to the sum.
template <typename T>
struct Tail {
  T buf[kLanes];
  int64_t n;
  Tail(const T* x, int64_t n_) : n(n_) {
    for (int64_t l = 0; l < kLanes; ++l) buf[l] = l < n ? x[l] : neg_inf();
  }
  static T neg_inf() {
    if constexpr (std::is_same_v<T, float>) return -std::numeric_limits<float>::infinity();
    return uint16_t{0xFF80};
  }
};

template <int W, typename T>
RINGTUNE_INLINE void one_row(T* __restrict x, int64_t V, int64_t y, float* loss) {
  constexpr int P = kLanes / W;
  const int64_t whole = V / kLanes * kLanes;
  Tail<T> tail(x + whole, V - whole);
  // max
  auto acc = Lanes<W>::all(-std::numeric_limits<float>::infinity());
  const auto max_in = [&](const T* at) {
    for (int p = 0; p < P; ++p) {
      const auto v = load<W>(at + p * W);
      acc.v[p] = v > acc.v[p] ? v : acc.v[p];
    }
  };
  for (int64_t j = 0; j < whole; j += kLanes) max_in(x + j);
  if (tail.n) max_in(tail.buf);
  float m = acc.v[0][0];
  for (int p = 0; p < P; ++p)
    for (int l = 0; l < W; ++l) m = acc.v[p][l] > m ? acc.v[p][l] : m;
  // sum of exponentials: float lanes over blocks of kSumBlock values, the blocks summed in double
  double total = 0;
  for (int64_t b = 0; b < whole; b += kSumBlock) {
    const int64_t e = b + kSumBlock < whole ? b + kSumBlock : whole;
    acc = Lanes<W>::all(0.0f);
    for (int64_t j = b; j < e; j += kLanes)
      for (int p = 0; p < P; ++p) acc.v[p] += exp_poly<W>(load<W>(x + j + p * W) - m);
    total += acc.sum();
  }
  if (tail.n) {
    for (int p = 0; p < P; ++p) acc.v[p] = exp_poly<W>(load<W>(tail.buf + p * W) - m);
    total += acc.sum();
  }
  const float s = static_cast<float>(total);
  // loss, then the row replaced by softmax - one-hot
  const float xy = scalar(x[y]);
  *loss = std::log(s) - (xy - m);
  const float inv = 1.0f / s;
  for (int64_t j = 0; j < whole; j += kLanes)
    for (int p = 0; p < P; ++p) store<W>(x + j + p * W, exp_poly<W>(load<W>(x + j + p * W) - m) * inv);
  if (tail.n) {
    for (int p = 0; p < P; ++p) store<W>(tail.buf + p * W, exp_poly<W>(load<W>(tail.buf + p * W) - m) * inv);
    for (int64_t l = 0; l < tail.n; ++l) x[whole + l] = tail.buf[l];
  }
  T gy[W];
  store<W>(gy, exp_poly<W>(splat<W>(xy - m)) * inv - 1.0f);
  x[y] = gy[0];
}

template <int W, typename T>
RINGTUNE_INLINE void rows(T* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss) {
  for (int64_t r = r0; r < r1; ++r) one_row<W>(x + r * V, V, y[r], loss + r);
}

// The same source compiled for each instruction set.
#define RINGTUNE_VARIANT(NAME, W, ATTR)                                                                  \
  ATTR void f32_##NAME(float* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss) {     \
    rows<W>(x, V, y, r0, r1, loss);                                                                      \
  }                                                                                                      \
  ATTR void bf16_##NAME(uint16_t* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss) { \
    rows<W>(x, V, y, r0, r1, loss);                                                                      \
  }
RINGTUNE_VARIANT(baseline, 4, )
#if defined(__x86_64__) && defined(__GNUC__)
RINGTUNE_VARIANT(avx2, 8, __attribute__((target("avx2"))))
RINGTUNE_VARIANT(avx512, 16, __attribute__((target("avx512f"))))
#endif
#undef RINGTUNE_VARIANT

const XentVariant& best() {
  static const XentVariant v = xent_variants().front();
  return v;
}

}  // namespace

std::vector<XentVariant> xent_variants() {
  std::vector<XentVariant> out;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) out.push_back({"avx512f", f32_avx512, bf16_avx512});
  if (__builtin_cpu_supports("avx2")) out.push_back({"avx2", f32_avx2, bf16_avx2});
#endif
  out.push_back({"baseline", f32_baseline, bf16_baseline});
  return out;
}

void xent_grad_rows_f32(float* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss) {
  best().f32(x, V, y, r0, r1, loss);
}

void xent_grad_rows_bf16(uint16_t* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss) {
  best().bf16(x, V, y, r0, r1, loss);
}

float xent_exp(float x) { return exp_poly<4>(splat<4>(x))[0]; }

}  // namespace ringtune
