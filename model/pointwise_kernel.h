// Fused CPU kernels for the decoder's pointwise work: RMSNorm, rotary embeddings and the SwiGLU
// product, forward and backward, each one pass over its rows where libtorch's eager form makes
// three to ten (a power, a mean, a reciprocal square root, products, casts, a concatenation, their
// backward nodes and the sums of their gradients), each a sweep over the activations in memory.
// Arithmetic in float32 whatever the storage (float32 or bfloat16 as raw bits, rounded to nearest
// even when stored). No libtorch here: the file is compiled with -O3 and one variant per instruction
// set (AVX-512, AVX2, baseline), the best the CPU runs chosen at first use; contraction into fused
// multiply-adds is off and the one sum (RMSNorm's) keeps the same 16 lanes in the same order, so the
// variants give the same bits. The autograd functions around them are in model/pointwise.h.
// defines: PointwiseVariant, pointwise_variants, pointwise_kernels
#pragma once
#include <cstdint>
#include <vector>

namespace ringtune {

// Pointers are float32 or, with bf16, bfloat16 bits (uint16_t); rows are contiguous.
struct PointwiseVariant {
  const char* name;
  // RMSNorm of rows r0 .. r1 of x [rows, d] with weight w [d] (x's dtype), as Hugging Face computes
  // it: rstd = 1 / sqrt(mean(x^2) + eps) in float32 (stored per row), y = w * (x * rstd rounded to
  // x's dtype).
  void (*rms_norm)(bool bf16, const void* x, const void* w, void* y, float* rstd, int64_t d, float eps, int64_t r0,
                   int64_t r1);
  // Its backward for those rows: dx = rstd * (gn - n * mean(gn * n)), gn = g * w, n = x * rstd.
  // With dw (float32 [d], not null): dw += sum over the rows of g * n (n rounded as in forward).
  void (*rms_norm_backward)(bool bf16, const void* x, const void* w, const float* rstd, const void* g, void* dx,
                            float* dw, int64_t d, int64_t r0, int64_t r1);
  // Rotary embedding of rows r0 .. r1 of x [rows, hd], row r at position row r / heads of the
  // float32 tables cos, sin [positions, hd] (rounded to bf16 first for bf16 x, as Hugging Face casts
  // them): y = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1) for the row's halves
  // x1, x2. Backward (its transpose, x being the gradient g): dx1 = g1 cos1 + g2 sin2,
  // dx2 = g2 cos2 - g1 sin1.
  void (*rope)(bool bf16, bool backward, const void* x, const float* cos, const float* sin, void* y, int64_t hd,
               int64_t heads, int64_t r0, int64_t r1);
  // y = silu(g) * u over values i0 .. i1 (silu rounded to bf16 first for bf16, as eager computes it).
  void (*swiglu)(bool bf16, const void* g, const void* u, void* y, int64_t i0, int64_t i1);
  // Its backward: du = go * silu(g), dg = go * u * s * (1 + g * (1 - s)), s = sigmoid(g).
  void (*swiglu_backward)(bool bf16, const void* go, const void* g, const void* u, void* dg, void* du, int64_t i0,
                          int64_t i1);
};

// The variants this CPU runs, the one used first.
std::vector<PointwiseVariant> pointwise_variants();
// The first of them.
const PointwiseVariant& pointwise_kernels();

}  // namespace ringtune
