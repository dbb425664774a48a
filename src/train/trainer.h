// `ringtune train`: prepared data -> packed sequences -> micro-batches -> AdamW steps, for LoRA
// (lora_config.r set) or full fine-tuning, with validation, metrics.jsonl and a final export
// (PEFT adapter or Hugging Face model directory) under output_dir.
// Single process for now: the distributed path (issue 5) slices each global batch by rank.
// defines: TrainSummary, run_training
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ringtune {

class Config;
struct LoraOptions;

struct TrainSummary {
  int64_t steps = 0;
  std::vector<double> step_losses;  // mean supervised-token loss of each optimizer step
  double final_valid_loss = -1;     // -1: no validation data
  std::string export_dir;
  std::string resumed_from;  // checkpoint path, empty for a fresh run
};

// Thrown after SIGTERM (or SIGINT): a checkpoint was written; `train` exits 143.
struct StopRequested {
  std::string checkpoint;
};

TrainSummary run_training(const Config& config);

// lora_config.* (and seed) as LoraOptions; InputError naming the key when invalid.
LoraOptions lora_options_from_config(const Config& config);

}  // namespace ringtune
