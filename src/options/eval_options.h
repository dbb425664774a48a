// Everything `ringtune eval` reads from the training config, typed once: the model (the same
// ModelOptions as train; dtype float32 unless the config sets one), the data path and the
// validation and exact-match settings.
// defines: EvalOptions, eval_options_from_config
#pragma once
#include <cstdint>
#include <string>

#include "src/data/data_pipeline.h"     // defines: DataSpec
#include "src/options/model_options.h"  // defines: ModelOptions

namespace ringtune {

class Config;  // src/config/registry.h

struct EvalOptions {
  std::string config_name;  // the config file, for the summary
  std::string output_dir;
  ModelOptions model;  // `adapter` left to the command (--checkpoint)
  DataSpec data;
  std::string valid_path;  // empty: no loss or perplexity
  std::string test_path;   // exact match: test_path, else valid_path
  std::string test_key;    // the key test_path came from ("test_path" or "valid_path")
  bool packing = true;
  uint64_t seed = 42;
  int64_t batch_size = 1;  // eval_batch_size_per_device
  bool exact_match = false;
  int64_t max_new_tokens = 256;
};

EvalOptions eval_options_from_config(const Config& config);

}  // namespace ringtune
