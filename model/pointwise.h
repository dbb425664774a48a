// The decoder's pointwise operations, RMSNorm, rotary embeddings and the SwiGLU product, as
// autograd functions over the fused CPU kernels of model/pointwise_kernel.h where they apply (CPU
// tensors of float32 or bfloat16, and not turned off), and as libtorch's eager operators elsewhere
// (a GPU, other dtypes, RINGTUNE_FUSED_POINTWISE=0). Each fused function keeps less for its
// backward pass than autograd through the eager operators: RMSNorm its input and one float32 per
// row (not a float32 copy of the input and its square), SwiGLU its two inputs (not also SiLU's
// output), rotary embeddings nothing but the shared cos/sin tables (not bf16 copies of them).
// defines: rms_norm, fused_rope, swiglu, fused_pointwise, allow_fused_pointwise
#pragma once

namespace at {
class Tensor;
}

namespace ringtune {

// Hugging Face's LlamaRMSNorm: x normalised in float32, cast back to x's dtype, times weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// apply_rope (model/rope.h) by the fused kernel: x [B, H, T, hd] rotated by the float32 tables
// cos, sin [B, T, hd], the tables cast to x's dtype. Where x is a transposed view of a contiguous
// [B, T, H, hd] tensor (as the projections make it; the result then is one too); an undefined
// tensor where the kernel does not apply.
at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// silu(gate) * up.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

// Whether the fused kernels are used where they apply: yes unless RINGTUNE_FUSED_POINTWISE=0 was
// in the environment at start or allow_fused_pointwise(false) was called (the tests compare both).
bool fused_pointwise();
void allow_fused_pointwise(bool allow);

}  // namespace ringtune
