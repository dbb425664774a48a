// Memory planning of a training run; see memory_plan.h.
#include "src/train/memory_plan.h"

#include <dlfcn.h>
#include <torch/version.h>

#include <algorithm>

#include "src/error.h"                  // defines: InputError
#include "src/io/hf_model.h"            // defines: read_hf_config
#include "src/options/train_options.h"  // defines: TrainOptions
#include "src/train/model_setup.h"      // defines: visible_gpus

namespace ringtune {

namespace {

bool runs_on_cuda(const TrainOptions& o) {
  if (o.device == "cpu") return false;
  return o.device == "cuda" || visible_gpus() > 0;
}

// cudaMemGetInfo of the current device from the CUDA runtime libtorch loaded (looked up in the
// process, then in libcudart): free bytes, or -1.
int64_t cuda_free_bytes() {
  using Fn = int (*)(size_t*, size_t*);
  void* sym = dlsym(RTLD_DEFAULT, "cudaMemGetInfo");
  for (const char* lib : {"libcudart.so", "libcudart.so.12", "libcudart.so.11.0"}) {
    if (sym) break;
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL)) sym = dlsym(h, "cudaMemGetInfo");
  }
  if (!sym) return -1;
  size_t free = 0, total = 0;
  if (reinterpret_cast<Fn>(sym)(&free, &total) != 0) return -1;
  return static_cast<int64_t>(free);
}

}  // namespace

MemoryInputs memory_inputs(const TrainOptions& o, int world) {
  MemoryInputs in;
  in.model = read_hf_config(o.model.base_dir);
  check_context_fits_model(o.model, in.model);  // before the estimate warns about a context the model refuses
  in.dtype_bytes = o.model.dtype == "float32" ? 4 : 2;
  in.nf4 = o.model.quantization == "nf4";
  in.lora = o.model.lora;
  in.eight_bit = o.adamw.eight_bit;
  in.min_8bit_size = o.adamw.min_8bit_size;
  in.zero_stage = o.zero_stage;
  in.world = std::max(1, world);
  in.micro_batch = std::max<int64_t>(1, o.micro_batch);
  in.seq = o.data.options.context_length > 0 ? o.data.options.context_length : in.model.max_position_embeddings;
  in.gradient_checkpointing = o.model.gradient_checkpointing;
  in.packed = o.packing;
  in.cuda = runs_on_cuda(o);
  in.fused_attention = TORCH_VERSION_MAJOR >= 2 || !in.cuda;  // the CPU: model/attention_kernel.h
  in.baseline_bytes = in.cuda ? 0 : std::max<int64_t>(0, process_resident_bytes());
  return in;
}

int64_t memory_budget(const TrainOptions& o, bool cuda, int local_size, std::string* source) {
  if (o.memory_budget > 0) {
    *source = "memory_budget";
    return o.memory_budget;
  }
  if (cuda) {
    *source = "free memory of the GPU";
    return cuda_free_bytes();
  }
  const int64_t avail = available_memory_bytes();
  *source = "available RAM" + (local_size > 1 ? " / " + std::to_string(local_size) + " ranks on this host" : std::string());
  return avail < 0 ? -1 : avail / std::max(1, local_size);
}

MemoryEstimate plan_memory(TrainOptions& o, int world, int local_size, std::string* log) {
  MemoryInputs in;
  try {
    in = memory_inputs(o, world);
  } catch (const InputError&) {  // no readable config.json: loading the model says what is wrong
    if (o.micro_batch == 0) o.micro_batch = 1;
    return {};
  }
  return plan_memory(o, in, local_size, log);
}

namespace {

// The estimate adds int64 byte counts. Each key has a bound, but their product can still pass
// 2^63 (a micro-batch of millions of sequences of a million tokens): such a run is refused, with a
// coarse upper bound of its activations, before any estimate is computed.
void check_estimable(const TrainOptions& o, const MemoryInputs& in) {
  const int world = in.world;
  const int64_t most_micro = o.micro_batch > 0 ? o.micro_batch : (o.global_batch_at(world) + world - 1) / world;
  const LlamaConfig& c = in.model;
  const double tokens = static_cast<double>(std::max<int64_t>(1, most_micro)) * static_cast<double>(in.seq);
  const double per_token = 4.0 * std::max({static_cast<double>(c.num_attention_heads) * static_cast<double>(in.seq),
                                           static_cast<double>(c.num_hidden_layers) *
                                               (16.0 * static_cast<double>(c.hidden_size) + 4.0 * static_cast<double>(c.intermediate_size)),
                                           static_cast<double>(c.vocab_size)});
  if (tokens * per_token > 0x1p58)
    o.origins.fail(o.micro_batch > 0 ? "train_batch_size_per_device" : "global_batch_size",
                   "micro-batches of up to " + std::to_string(most_micro) + " sequences of " + std::to_string(in.seq) +
                       " tokens would need on the order of " + format_bytes(static_cast<int64_t>(std::min(tokens * per_token, 0x1p62))) +
                       " of activations per rank; lower it or context_length");
}

}  // namespace

MemoryEstimate plan_memory(TrainOptions& o, MemoryInputs& in, int local_size, std::string* log) {
  check_estimable(o, in);
  const int world = in.world;
  std::string source;
  const int64_t budget = memory_budget(o, in.cuda, local_size, &source);
  // What would lower it, among what this run does not do already.
  std::string advice = "; lower context_length";
  if (!in.gradient_checkpointing) advice += ", set gradient_checkpointing: true";
  if (!in.lora) advice += ", train LoRA (lora_config)";
  else if (!in.nf4) advice += ", use QLoRA (quantization: nf4)";
  if (!in.eight_bit) advice += ", use optimizer: adamw_8bit";
  advice += " or give more memory (`ringtune estimate` shows where it goes)";
  if (o.micro_batch == 0) {  // auto
    const int64_t per_rank = (o.global_batch_at(world) + world - 1) / world;
    if (budget < 0) {
      o.micro_batch = 1;
      *log += "train_batch_size_per_device auto: the " + source + " is unknown; micro-batch 1\n";
    } else {
      const int64_t b = largest_micro_batch(in, per_rank, budget);
      if (b == 0) {
        in.micro_batch = 1;
        o.origins.fail(o.memory_budget > 0 ? "memory_budget" : "train_batch_size_per_device",
                       "auto: even micro-batch 1 needs an estimated " + format_bytes(estimate_memory(in).total) +
                           " per rank, more than the " + source + " (" + format_bytes(budget) + ")" + advice);
      }
      o.micro_batch = b;
      *log += "train_batch_size_per_device auto: " + std::to_string(b) + " (the largest of 1.." +
              std::to_string(per_rank) + " whose estimate fits the " + source + ", " + format_bytes(budget) + ")\n";
    }
  }
  in.micro_batch = o.micro_batch;
  MemoryEstimate e = estimate_memory(in);
  if (budget >= 0 && e.total > budget) {
    if (o.memory_budget > 0)
      o.origins.fail("memory_budget", "the estimate for micro-batch " + std::to_string(o.micro_batch) + " is " +
                                          format_bytes(e.total) + " per rank, more than memory_budget " +
                                          format_bytes(budget) + advice);
    *log += "warning: the estimate (" + format_bytes(e.total) + ") exceeds the " + source + " (" +
            format_bytes(budget) + ")\n";
  }
  *log += memory_summary(e) + "\n";
  return e;
}

}  // namespace ringtune
