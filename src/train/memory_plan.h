// The memory estimate of a training run's options: the inputs from its config (the model's
// config.json, dtype, LoRA/QLoRA, optimizer, batch, context, checkpointing, world size), the
// budget (memory_budget, else the available memory), and `train_batch_size_per_device: auto`.
// Runs before any work (no data prepared, no weights read).
// defines: memory_inputs, memory_budget, plan_memory
#pragma once
#include <cstdint>
#include <string>

#include "src/train/memory_estimate.h"  // defines: MemoryInputs, MemoryEstimate

namespace ringtune {

struct TrainOptions;  // src/options/train_options.h

// The estimate's inputs for `o` on `world` ranks; micro-batch 1 when o.micro_batch is auto (0).
// The CPU baseline is this process's resident size now (libraries loaded, no tensors yet).
// InputError when the model's config.json cannot be read.
MemoryInputs memory_inputs(const TrainOptions& o, int world);

// The budget of one rank and where it comes from ("memory_budget", "available RAM / 2 ranks on this
// host", "free memory of cuda:0"); -1 when unknown.
int64_t memory_budget(const TrainOptions& o, bool cuda, int local_size, std::string* source);

// Resolves o.micro_batch auto (0) to the largest micro-batch, up to this rank's share of the global
// batch, whose estimate fits the budget; refuses (InputError naming the key, exit 2) a budget below
// the estimate of micro-batch 1 (auto) or of the configured micro-batch (memory_budget set); warns
// when the estimate exceeds the available memory otherwise. Returns the estimate of the chosen batch
// and adds to *log the lines to print (the summary, the choice). Without a readable config.json
// it plans nothing (auto becomes 1): loading the model then reports the problem.
MemoryEstimate plan_memory(TrainOptions& o, int world, int local_size, std::string* log);
// The same on inputs already read (memory_inputs(o, in.world)); in.micro_batch becomes the choice.
MemoryEstimate plan_memory(TrainOptions& o, MemoryInputs& in, int local_size, std::string* log);

}  // namespace ringtune
