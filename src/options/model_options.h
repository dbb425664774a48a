// What model a command runs on, as typed options: the base model directory, dtype and device,
// the weights to put on it (an adapter, a checkpoint or a model directory), and for training the
// LoRA options or full fine-tuning. Built from a Config here (train, eval) or from command-line
// options (generate); train/model_setup.h turns them into a model.
// defines: ModelOptions, model_options_from_config, lora_options_from_config, lora_options_if_set
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "model/lora.h"                 // defines: LoraOptions
#include "src/config/key_origins.h"     // defines: KeyOrigins

namespace ringtune {

class Config;  // src/config/registry.h

struct ModelOptions {
  std::string base_dir;           // Hugging Face model directory (initial_base_model_ckpt_path)
  std::string dtype = "float32";  // of the base weights and the activations
  std::string device = "cpu";     // "cpu", "cuda:0", ...
  int64_t context_length = 0;     // > 0: must fit the model's max_position_embeddings
  std::string quantization = "none";  // "nf4": QLoRA, the decoder projections in NF4
  // Weights put on the base: a PEFT adapter directory, a checkpoint .h5, a training output_dir
  // or a Hugging Face model directory. Empty: the base alone.
  std::string adapter;
  // Training only (see train/model_setup.h): which parameters train.
  bool training = false;
  std::optional<LoraOptions> lora;  // lora_config: new adapters, or what a continued one must match
  uint64_t seed = 42;               // dropout and adapter initialisation
  bool gradient_checkpointing = false;
  // The config keys behind these options, for messages; empty for command-line use.
  KeyOrigins origins;
  bool adapter_from_config = false;  // `adapter` is initial_adapter_model_ckpt_path
};

// lora_config.* (and seed) as LoraOptions; InputError naming the key when invalid.
LoraOptions lora_options_from_config(const Config& config);
// The same when lora_config.r is set (LoRA), else nullopt (full fine-tuning).
std::optional<LoraOptions> lora_options_if_set(const Config& config);

// initial_base_model_ckpt_path, dtype, context_length, quantization, and for training (`training` true)
// initial_adapter_model_ckpt_path, lora_config, seed and gradient_checkpointing.
ModelOptions model_options_from_config(const Config& config, bool training);

}  // namespace ringtune
