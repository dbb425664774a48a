// Rotary position embeddings (rotate-half convention of Hugging Face Llama weights), with
// `linear` and `llama3` frequency scaling.
#pragma once
#include <torch/types.h>

#include "model/llama_config.h"

namespace ringtune {

// Inverse frequencies [head_dim / 2] (float32) after scaling.
torch::Tensor rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling);

// cos and sin tables for the given positions: positions int64 [B, T] -> each [B, T, head_dim]
// (the half-table repeated twice, as rotate-half expects), in float32.
std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& inv_freq,
                                                     const torch::Tensor& positions);

// x [B, heads, T, head_dim]; cos/sin [B, T, head_dim]. Returns x * cos + rotate_half(x) * sin.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace ringtune
