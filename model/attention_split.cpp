// dS split into bf16 hi + lo; see attention_split.h. Built with -O3 -ffp-contract=off and without
// the precompiled header (model/CMakeLists.txt).
#include "model/attention_split.h"

#include <cstring>

#define RINGTUNE_INLINE inline __attribute__((always_inline))

namespace ringtune {

namespace {

RINGTUNE_INLINE float widen_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Branch-free (c10::BFloat16's conversion branches on NaN, which stops the vectoriser).
RINGTUNE_INLINE uint16_t round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? uint16_t{0x7FC0} : static_cast<uint16_t>(r);
}

RINGTUNE_INLINE void split(const float* dp, const uint16_t* p, int64_t m, int64_t n, uint16_t* hi, uint16_t* lo) {
  const int64_t n8 = n - n % 8;
  for (int64_t r = 0; r < m; ++r) {
    const float* dpr = dp + r * n;
    const uint16_t* pr = p + r * n;
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t c = 0; c < n8; c += 8)
      for (int k = 0; k < 8; ++k) lane[k] += widen_bf16(pr[c + k]) * dpr[c + k];
    float d = 0;
    for (int64_t c = n8; c < n; ++c) d += widen_bf16(pr[c]) * dpr[c];
    for (int k = 0; k < 8; ++k) d += lane[k];
    for (int64_t c = 0; c < n; ++c) {
      const float x = widen_bf16(pr[c]) * (dpr[c] - d);
      const uint16_t h = round_bf16(x);
      hi[r * n + c] = h;
      lo[r * n + c] = round_bf16(x - widen_bf16(h));
    }
  }
}

// The same source compiled for each instruction set.
#define RINGTUNE_VARIANT(NAME, ATTR)                                                                  \
  ATTR void split_##NAME(const float* dp, const uint16_t* p, int64_t m, int64_t n, uint16_t* hi, \
                         uint16_t* lo) {                                                               \
    split(dp, p, m, n, hi, lo);                                                                       \
  }
RINGTUNE_VARIANT(baseline, )
#if defined(__x86_64__) && defined(__GNUC__)
RINGTUNE_VARIANT(avx2, __attribute__((target("avx2"))))
RINGTUNE_VARIANT(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))))
#endif
#undef RINGTUNE_VARIANT

const AttentionSplitVariant& best() {
  static const AttentionSplitVariant v = attention_split_variants().front();
  return v;
}

}  // namespace

std::vector<AttentionSplitVariant> attention_split_variants() {
  std::vector<AttentionSplitVariant> out;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    out.push_back({"avx512", split_avx512});
  if (__builtin_cpu_supports("avx2")) out.push_back({"avx2", split_avx2});
#endif
  out.push_back({"baseline", split_baseline});
  return out;
}

void attention_split_ds(const float* dp, const uint16_t* p, int64_t m, int64_t n, uint16_t* hi, uint16_t* lo) {
  best().split(dp, p, m, n, hi, lo);
}

}  // namespace ringtune
