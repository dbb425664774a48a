// Model FLOPs utilisation (MFU): tokens/s x FLOPs per token / peak FLOP/s.
//
// FLOPs per trained token, the convention of PaLM (Chowdhery et al. 2022, appendix B) adapted to a
// frozen base:
//   4 * N_frozen     frozen matmul weights: forward (2) and the input gradient (2), no weight
//                    gradient;
//   6 * N_trainable  trained matmul weights (LoRA A and B, or every weight in full fine-tuning):
//                    forward (2), input and weight gradients (4);
//   12 * L * d * T   attention scores and their weighting (QK^T and AV, forward and backward) at
//                    context T, counted over the whole T x T square (not halved for the causal
//                    mask, as PaLM counts it).
// Matmul weights are the 2-D parameters apart from the embedding table, a lookup; the output layer
// counts (a tied one through the embedding it shares). Norm weights and biases are left out.
//
// Peak FLOP/s: `peak_flops` from the config when set; else, on a GPU, a table of known devices
// (dense bf16/fp16 tensor-core peaks; the device named by the NVIDIA driver); else, on the CPU, a
// matmul measured at each start (a square matmul in the run's dtype on the rank's threads, the best
// of those in a quarter of a second) and the best figure seen, kept in $XDG_CACHE_HOME/ringtune/peak_flops (or
// ~/.cache/...) keyed by CPU model, threads and dtype, so a measurement on a busy machine does not
// stick. The CPU figure is what libtorch's GEMM reaches, not a datasheet peak.
// defines: FlopsModel, flops_model, peak_flops
#pragma once
#include <cstdint>
#include <string>

#include "model/llama.h"  // defines: LlamaForCausalLM

namespace ringtune {

struct FlopsModel {
  int64_t frozen_matmul = 0;     // N_frozen
  int64_t trainable_matmul = 0;  // N_trainable
  int64_t layers = 0, hidden = 0;
  // FLOPs per token at context `seq_len`.
  double per_token(int64_t seq_len) const {
    return 4.0 * static_cast<double>(frozen_matmul) + 6.0 * static_cast<double>(trainable_matmul) +
           12.0 * static_cast<double>(layers) * static_cast<double>(hidden) * static_cast<double>(seq_len);
  }
};

// The model's parameters sorted as above (requires_grad tells trainable from frozen).
FlopsModel flops_model(LlamaForCausalLM& model);

// Peak FLOP/s for MFU and where it came from (*source: "config", "table: NVIDIA H200 bf16", "measured
// ...", "cached ..."). `configured` > 0 wins. `device`: "cpu" or "cuda[:N]"; `dtype`: "float32",
// "bfloat16", "float16"; `threads`: intra-op threads of this rank. Returns 0 (and says why) when
// no figure can be had.
double peak_flops(double configured, const std::string& device, const std::string& dtype, int threads,
                  std::string* source);

}  // namespace ringtune
