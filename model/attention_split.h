// dS for one block of the CPU attention kernel's bf16 path (model/attention_kernel.cpp), split into
// two bf16 matrices: for row r of an [m, n] block, D_r = sum_j P_rj dP_rj (float32, eight fixed
// lanes), dS_rj = P_rj (dP_rj - D_r), hi = bf16(dS), lo = bf16(dS - hi), both rounded to nearest
// even (NaN to the quiet NaN c10::BFloat16 gives). A product with dS is then taken as two bf16
// products carrying about 16 bits of dS.
// No libtorch here: like src/train/xent_kernel.cpp the file is compiled with -O3 and one variant
// per instruction set (AVX-512, AVX2, baseline), the best the CPU runs chosen at first use, with
// contraction into fused multiply-adds off, so the variants give the same bits
// (tests/test_attention_kernel.cpp runs each the CPU has). A [128, 512] block: 203 us scalar with
// c10's conversion, about 19 us with AVX-512, 32 with AVX2, 72 on the baseline (a standalone copy).
// defines: attention_split_ds, AttentionSplitVariant, attention_split_variants
#pragma once
#include <cstdint>
#include <vector>

namespace ringtune {

// dp: [m, n] float32, p: [m, n] bf16 bits, hi and lo: [m, n] bf16 bits; all contiguous.
void attention_split_ds(const float* dp, const uint16_t* p, int64_t m, int64_t n, uint16_t* hi, uint16_t* lo);

// The variants this CPU runs, the one used first.
struct AttentionSplitVariant {
  const char* name;
  void (*split)(const float*, const uint16_t*, int64_t, int64_t, uint16_t*, uint16_t*);
};
std::vector<AttentionSplitVariant> attention_split_variants();

}  // namespace ringtune
