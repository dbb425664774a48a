// `ringtune estimate CONFIG [key=value ...]`: the memory a training run takes per rank, from the
// configuration alone (src/train/memory_estimate.h has the derivation), and the grid of LoRA/full,
// float32/8-bit Adam, gradient checkpointing, eager/fused attention and QLoRA for its model.
#include <torch/torch.h>

#include <iostream>

#include "distributed/process_info.h"
#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/config_args.h"
#include "src/config/registry.h"
#include "src/options/train_options.h"
#include "src/train/memory_plan.h"

namespace ringtune {

int cmd_estimate(const Args& args) {
  ArgParser p("estimate", "CONFIG [key=value ...]",
              "Estimates the peak memory of one rank of `ringtune train CONFIG`: base weights (dtype or\n"
              "NF4), trainable parameters, gradients, optimizer state (float32 or 8-bit, ZeRO-1 share),\n"
              "activations, logits and loss buffers, and on the CPU the process itself; then the same for\n"
              "LoRA/full fine-tuning, float32/8-bit Adam, gradient checkpointing, eager/fused attention and\n"
              "QLoRA. Reads the model's config.json only. With train_batch_size_per_device: auto, says\n"
              "which micro-batch train would pick.",
              {{"world-size", "N", "ranks the run will have (default: this launch's, else 1)", ""},
               {"device", "cpu|cuda", "estimate for this device instead of the config's (e.g. a GPU run, from a laptop)", ""},
               {"attention", "eager|fused", "attention implementation (default: this build's; fused needs libtorch >= 2)", ""},
               {"no-grid", "", "leave out the grid of alternatives", ""}});
  if (!p.parse(args)) return 0;
  const Config cfg = load_command_config("estimate", p.positional());
  TrainOptions o = train_options_from_config(cfg);
  const ProcessInfo proc = detect_process_info();
  int world = proc.world_size;
  if (p.has("world-size")) {
    const int64_t w = p.get_int("world-size");
    if (w < 1 || w > 1 << 20)
      throw InputError("ringtune estimate: --world-size " + std::to_string(w) + ": must be in [1, 1048576]");
    world = static_cast<int>(w);
  }
  // The CPU baseline counts the libraries a run has paged in: libtorch's GEMM and thread pool are
  // warmed by one small product in the run's dtype, as the first forward pass would.
  {
    const auto dtype = o.model.dtype == "float32" ? torch::kFloat32 : torch::kBFloat16;
    auto a = torch::ones({64, 64}, torch::TensorOptions().dtype(dtype));
    (void)torch::matmul(a, a).sum().item<double>();
  }
  if (p.has("device")) {
    const std::string d = p.get("device");
    if (d != "cpu" && d != "cuda") throw InputError("ringtune estimate: --device " + d + ": expected cpu or cuda");
    o.device = d;
  }
  const std::string attention = p.has("attention") ? p.get("attention") : "";
  if (!attention.empty() && attention != "eager" && attention != "fused")
    throw InputError("ringtune estimate: --attention " + attention + ": expected eager or fused");
  std::string log;
  MemoryInputs in = memory_inputs(o, world);
  plan_memory(o, in, world > 1 ? proc.local_size : 1, &log);  // train_batch_size_per_device auto, the budget
  if (!attention.empty()) in.fused_attention = attention == "fused";
  const MemoryEstimate e = estimate_memory(in);
  const LlamaConfig& c = in.model;
  std::cout << "model: " << c.model_type << ", " << c.num_hidden_layers << " layers, hidden " << c.hidden_size
            << ", MLP " << c.intermediate_size << ", " << c.num_attention_heads << " heads (" << c.num_key_value_heads
            << " key/value), vocab " << c.vocab_size << "; " << e.frozen_params + e.trainable_params
            << " parameters\n"
            << "run: " << (in.lora ? (in.nf4 ? "QLoRA" : "LoRA") : "full fine-tuning") << ", " << o.model.dtype
            << ", micro-batch " << in.micro_batch << " x " << in.seq << " tokens, " << world << " rank(s)"
            << (in.zero_stage == 1 && world > 1 ? " ZeRO-1" : "") << ", "
            << (in.eight_bit ? "adamw_8bit" : "adamw") << ", gradient checkpointing "
            << (in.gradient_checkpointing ? "on" : "off") << ", " << (in.fused_attention ? "fused" : "eager")
            << " attention" << (in.packed ? ", packed" : "") << ", " << (in.cuda ? "GPU" : "CPU") << "\n\n"
            << "per rank:\n"
            << memory_table(e);
  for (size_t at = 0; at < log.size();) {  // the budget and auto lines (the summary repeats the table)
    const size_t end = log.find('\n', at);
    const std::string line = log.substr(at, end - at);
    if (line.rfind("memory estimate", 0) != 0) std::cout << line << "\n";
    at = end == std::string::npos ? log.size() : end + 1;
  }
  if (!p.flag("no-grid")) {
    std::cout << "\nalternatives for this model and batch (LoRA rows: "
              << (in.lora ? "this lora_config" : "r 16 on all linear layers") << "):\n"
              << memory_grid(in);
  }
  return 0;
}

}  // namespace ringtune
