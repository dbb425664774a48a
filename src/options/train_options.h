// Everything `ringtune train` needs, typed and checked once from the Config (marian's "options
// read once"): the trainer and everything below it take these, never the Config.
// defines: TrainOptions, train_options_from_config
#pragma once
#include <cstdint>
#include <string>

#include "src/config/key_origins.h"   // defines: KeyOrigins
#include "src/data/data_pipeline.h"   // defines: DataSpec
#include "src/optim/adamw.h"          // defines: AdamWOptions
#include "src/options/model_options.h"  // defines: ModelOptions

namespace ringtune {

class Config;  // src/config/registry.h

struct TrainOptions {
  std::string config_yaml;  // the resolved config: stored in checkpoints, compared across ranks
  KeyOrigins origins;       // for checks that need the data or the model (they name the key)
  std::string output_dir;

  // What trains: base model, dtype, context, initial adapter, LoRA or full fine-tuning.
  ModelOptions model;
  std::string model_name;  // model_id, else the base directory: the adapter's base_model_name_or_path

  // Data.
  DataSpec data;
  std::string train_path;
  std::string valid_path;  // empty: no validation
  bool packing = true;
  bool pad_to_longest = false;  // packing off (llmforge padding: longest): batches padded to their longest row
  uint64_t seed = 42;  // sample order, dropout, adapter initialisation

  // Steps: global_batch sequences per optimizer step, in micro-batches of micro_batch per rank.
  int64_t micro_batch = 1;   // 0: auto (plan_memory picks it from the memory estimate)
  int64_t memory_budget = 0;  // bytes one rank may use; 0: unset (the available memory)
  int64_t global_batch = 0;  // 0: micro_batch * accumulation * world size
  int64_t accumulation = 1;
  int64_t max_steps = 0;     // > 0: overrides num_epochs
  int64_t num_epochs = 1;
  int64_t min_update_steps = 0;  // > 0 (llmforge): whole epochs until at least this many steps
  int64_t most_epochs = 10000;   // the bound min_update_steps may not push the epochs past (num_epochs's)
  int64_t global_batch_at(int world_size) const {
    return global_batch > 0 ? global_batch : micro_batch * accumulation * world_size;
  }

  // Optimizer and schedule.
  AdamWOptions adamw;
  double learning_rate = 1e-4;
  std::string lr_schedule = "cosine";
  int64_t warmup_steps = 0;
  double max_grad_norm = 1.0;  // 0: no clipping
  std::string on_nonfinite = "stop";  // stop | skip_step: a step whose loss or gradient norm is not finite

  // Validation and checkpoints.
  int64_t eval_steps = 0;  // 0: at each epoch's end
  int64_t eval_batch = 1;
  int64_t checkpoint_every = 0;  // 0: at each epoch's end
  int64_t every_n_epochs = 0;    // > 0 (llmforge): checkpoint and validate every n epochs instead
  int64_t checkpoints_to_keep = 2;
  std::string resume = "auto";   // auto | none | a checkpoint path

  // Devices, distributed and logging.
  std::string device = "auto";   // auto | cpu | cuda (distributed/device_plan.h)
  std::string backend = "auto";  // auto | mpi | nccl
  int zero_stage = 0;
  double timeout_s = 600;  // distributed.timeout_s: the collective watchdog (0: off)
  double peak_flops = 0;  // for mfu; 0: automatic (src/train/flops.h)
  std::string log_level = "info";
  bool per_rank_log_files = false;
};

// The Config as TrainOptions (the registry's validator has already run at load; this adds the
// LoRA checks and refuses dtype float16, which would need loss scaling). InputError naming the key.
TrainOptions train_options_from_config(const Config& config);

}  // namespace ringtune
