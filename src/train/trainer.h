// `ringtune train`: prepared data -> packed sequences -> micro-batches -> AdamW steps, for LoRA or
// full fine-tuning, on one process or every rank of an mpirun job (each rank runs this same
// function on its slice of every global batch), with validation, metrics.jsonl, HDF5 checkpoints
// and resume, and a final export (PEFT adapter or Hugging Face model directory) under output_dir.
// defines: TrainSummary, StopRequested, run_training
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ringtune {

struct TrainOptions;  // src/options/train_options.h

struct TrainSummary {
  int64_t steps = 0;
  std::vector<double> step_losses;  // mean supervised-token loss of each optimizer step
  double final_valid_loss = -1;     // -1: no validation data
  std::string export_dir;
  std::string resumed_from;  // checkpoint path, empty for a fresh run
  int64_t skipped_steps = 0;  // optimizer steps skipped for a non-finite loss (on_nonfinite: skip_step)
};

// Thrown after SIGTERM (or SIGINT): a checkpoint was written; `train` exits 143.
struct StopRequested {
  std::string checkpoint;
};

TrainSummary run_training(const TrainOptions& options);

}  // namespace ringtune
