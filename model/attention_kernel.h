// Causal attention over packed segments, computed block by block without the dense [T, T] score,
// mask and probability matrices (the scheme of FlashAttention's "variable length" kernels, on the
// CPU with BLAS products). Query blocks of kAttentionBlockRows rows only visit the keys of their
// own segments up to the diagonal, so masked-out work is skipped, not computed and thrown away.
// The forward pass keeps the output and the probabilities of the blocks it visited (in bf16 when
// the products are bf16); the backward pass reads them back. (Recomputing them in the backward
// pass, FlashAttention's way, keeps less but costs one more product and exponential per block:
// measured 13% slower on the small full fine-tuning shape of ../shared/bench.) Used by
// AttentionImpl on the CPU, where libtorch 1.x's eager attention (batched products, a dense mask)
// was the larger half of a LoRA step's time.
// defines: kAttentionBlockRows, attention_kernel_saved_per_row, segment_run_starts,
//          segment_causal_attention, attention_kernel_bf16_products,
//          allow_attention_kernel_bf16_products
#pragma once
#include <cstdint>

namespace at {
class Tensor;
}

namespace ringtune {

constexpr int64_t kAttentionBlockRows = 128;  // query rows per block (64 and 256 measured slower)

// Probabilities kept per query head and row of a sequence of `length` that is one segment (the
// most: shorter segments visit fewer keys): the blocks' areas over the rows.
double attention_kernel_saved_per_row(int64_t length);

// For segment ids [B, T] (any integer dtype): the index of the first position of each position's
// run of equal ids, int64 [B, T]. Undefined when an id appears in two separate runs of a row (the
// caller then uses a dense mask). With undefined ids: a single run per row (plain causal).
at::Tensor segment_run_starts(const at::Tensor& segment_ids, int64_t batch, int64_t length);

// softmax(q k^T / sqrt(hd) + mask) v for q [B, H, T, hd] and k, v [B, K, T, hd] (query head h
// reads key/value head h / (H / K)), where query i sees keys starts[b, i] .. i. Float32 or
// bfloat16 inputs; softmax and gradient sums in float32, results in the inputs' dtype. Products in
// float32, or for bfloat16 inputs in bf16 with float32 results when attention_kernel_bf16_products().
// Differentiable in q, k, v. Returns [B, H, T, hd] as a view of a [B, T, H, hd] contiguous tensor
// (so transpose(1, 2) is free).
at::Tensor segment_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& starts);

// Whether bfloat16 inputs take their products in bf16 (oneDNN's bf16 GEMM, found at run time in
// the libraries libtorch loaded, and allowed); otherwise they are widened to float32.
bool attention_kernel_bf16_products();

// Allows or forbids the bf16 products. Allowed by default; RINGTUNE_ATTENTION_BF16_PRODUCTS=0 in
// the environment forbids them from the start (float32 products, the code before they were on by
// default). The tests compare both paths.
void allow_attention_kernel_bf16_products(bool allow);

}  // namespace ringtune
