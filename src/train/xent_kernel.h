// Cross-entropy and its gradient with respect to the logits, in one sweep over rows of logits
// that are overwritten by that gradient: the loss's hot loop when the output layer is frozen
// (src/train/loss.cpp). For a row x of V logits and its label y:
//   m = max_j x_j,  s = sum_j exp(x_j - m),  loss = log(s) - (x_y - m)
//   x_j <- exp(x_j - m) / s - [j == y]        (softmax minus one-hot)
// computed in float32 whatever the storage (float32 or bfloat16; the gradient is rounded once, to
// nearest even, when stored), in three passes over a row that stays in cache, instead of libtorch's
// float32 copy, log-softmax, exponential and cast back, each a pass over all the logits in memory.
// No libtorch here: the file is compiled with -O3 and one variant per instruction set (AVX-512,
// AVX2, baseline), the best the CPU runs chosen at first use; contraction into fused multiply-adds
// is off and every sum keeps the same 16 lanes in the same order, so the variants give the same
// bits (tests/test_loss.cpp runs each the CPU has).
// defines: xent_grad_rows_f32, xent_grad_rows_bf16, XentVariant, xent_variants, xent_exp
#pragma once
#include <cstdint>
#include <vector>

namespace ringtune {

// Rows r0 .. r1 of x [rows, V] (contiguous) with labels y[r] in [0, V): writes loss[r] and replaces
// each row by its gradient. bf16 rows are raw bfloat16 bits.
void xent_grad_rows_f32(float* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss);
void xent_grad_rows_bf16(uint16_t* x, int64_t V, const int64_t* y, int64_t r0, int64_t r1, float* loss);

// The variants this CPU runs, the one used first.
struct XentVariant {
  const char* name;
  void (*f32)(float*, int64_t, const int64_t*, int64_t, int64_t, float*);
  void (*bf16)(uint16_t*, int64_t, const int64_t*, int64_t, int64_t, float*);
};
std::vector<XentVariant> xent_variants();

// The exponential the kernel uses (for its tests): Cephes' single-precision polynomial after a
// Cody-Waite reduction by ln 2, for x <= 88; below -87.3 (results under the smallest normal
// float32, 1.18e-38) it returns 0.
float xent_exp(float x);

}  // namespace ringtune
