// How much memory a training run takes per rank, from the configuration alone (no weights are
// read): `ringtune estimate`, the summary line at the start of `train`, and the micro-batch that
// `train_batch_size_per_device: auto` picks. The derivation of every term is in
// memory_estimate.cpp; docs/memory.md walks through it with the measured check.
// defines: MemoryInputs, MemoryPart, MemoryEstimate, estimate_memory, memory_table, memory_grid,
//          largest_micro_batch, process_resident_bytes, available_memory_bytes
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/llama_config.h"  // defines: LlamaConfig
#include "src/config/byte_size.h"  // defines: parse_bytes, format_bytes
#include "model/lora.h"          // defines: LoraOptions

namespace ringtune {

struct MemoryInputs {
  LlamaConfig model;
  int64_t dtype_bytes = 4;          // of the base weights and activations: 4 float32, 2 bfloat16
  bool nf4 = false;                 // QLoRA: decoder projections in NF4
  std::optional<LoraOptions> lora;  // nullopt: full fine-tuning
  bool eight_bit = false;           // adamw_8bit moments
  int64_t min_8bit_size = 4096;
  int zero_stage = 0;
  int world = 1;
  int64_t micro_batch = 1;
  int64_t seq = 512;                // context_length: the longest row
  bool gradient_checkpointing = false;
  bool fused_attention = true;      // no [T, T] scores kept: SDPA (libtorch >= 2), or the CPU's block-wise kernel
  bool packed = true;               // packing: a [B, 1, T, T] segment mask per layer
  bool cuda = false;                // device memory: no process baseline
  int64_t baseline_bytes = 0;       // CPU: resident size of the process before any tensor (libraries)
};

struct MemoryPart {
  std::string name;
  int64_t bytes = 0;
  std::string detail;  // how it is made up
};

struct MemoryEstimate {
  std::vector<MemoryPart> parts;  // in table order; their sum is `total` only for the persistent ones (see peak)
  int64_t total = 0;              // the predicted peak (on the CPU: resident, with the freed memory kept)
  int64_t live_total = 0;         // the peak of live tensor bytes (+ the process baseline)
  std::string peak_phase;         // "backward", "end of backward", "optimizer step"
  int64_t trainable_params = 0, frozen_params = 0;
  // Tensor bytes a forward pass keeps for backward (layers, final norm, loss input), the most that
  // live on top of the persistent state during a step (the largest transient phase), and during
  // its forward and backward passes (the optimizer step left out).
  int64_t saved_activations = 0, step_transient = 0, backward_transient = 0;
};

MemoryEstimate estimate_memory(const MemoryInputs& in);

// The breakdown as an aligned text table (one line per part, then the total and the peak phase).
std::string memory_table(const MemoryEstimate& e);
// One line: "memory estimate per rank: 3.1 GiB at the backward pass (weights 2.0 GiB, ...)".
std::string memory_summary(const MemoryEstimate& e);
// The lecture's "mixing and matching" grid for in's model and batch: LoRA vs full, float32 vs
// 8-bit Adam, gradient checkpointing off/on, eager vs fused attention, and QLoRA, one row each.
std::string memory_grid(const MemoryInputs& in);

// The largest micro-batch in [1, max_micro_batch] whose estimate fits `budget` (0: none fits). Every
// size is tried, as the CPU estimate is not monotonic in the batch (a tensor that passes the block
// pool's threshold leaves the pool), until one's estimate is more than twice the budget.
int64_t largest_micro_batch(MemoryInputs in, int64_t max_micro_batch, int64_t budget);

// The resident size of this process now (VmRSS), for the CPU baseline; -1 when unknown.
int64_t process_resident_bytes();
// MemAvailable of /proc/meminfo plus what this process already holds; -1 when unknown.
int64_t available_memory_bytes();

}  // namespace ringtune
