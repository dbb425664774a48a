// The model a command runs on, set up one way for train, eval and generate: the base model
// loaded in its dtype on its device, the context length checked against it, the adapter or
// checkpoint put on it, and for training the LoRA adapters (new or continued) or every parameter
// made trainable; plus the checks that tie data to a model (token ids inside the vocabulary, the
// padding id).
// defines: ModelSetup, setup_model, visible_gpus, resolve_device, check_token_ids, padding_id,
//          check_context_fits_model, check_data_fits_model, base_fingerprint, check_checkpoint_base
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"                // defines: LlamaForCausalLM
#include "src/io/adapter_io.h"          // defines: AdapterInfo
#include "src/options/model_options.h"  // defines: ModelOptions, LoraOptions

namespace ringtune {

class Tokenizer;  // src/tokenizer/tokenizer.h

struct ModelSetup {
  LlamaForCausalLM model{nullptr};
  AdapterInfo adapter;               // what ModelOptions::adapter held (kind empty without one)
  bool lora = false;                 // LoRA adapters are attached (new or loaded)
  LoraOptions lora_options;          // theirs, when lora
  std::vector<std::string> adapted;  // new adapters: the adapted module names
};

// Loads options.base_dir and puts options.adapter on it (load_adapter: its own LoRA options).
// Training (options.training):
//   - continuing a LoRA adapter: lora_config, when set, must repeat its rank, alpha, rsLoRA and
//     target modules (InputError naming the lora_config key otherwise); lora_dropout comes from
//     lora_config, else from the adapter; the seed from the options;
//   - a full-weight adapter with lora_config is refused;
//   - else options.lora attaches new adapters, or, without it, every parameter trains.
// Errors name the config keys when the options came from a config.
ModelSetup setup_model(const ModelOptions& options);

// The fingerprint of a base model directory (config.json and its weight files, by content), as
// checkpoints record it ("+nf4-..." is added there for a quantized base).
std::string base_fingerprint(const std::string& base_dir);

// A checkpoint applies to the base it was trained on: InputError "<file>: trained on other base
// weights than <base_dir> ..." when `stored_hash` (its base_hash, quantization suffix aside)
// differs from base_dir's fingerprint.
void check_checkpoint_base(const std::string& stored_hash, const std::string& file, const std::string& base_dir);

// The GPUs this libtorch sees (0 for a CPU-only build or without a GPU).
int visible_gpus();

// A command's --device: "cpu", "cuda" (the first GPU), "cuda:N", or "auto" (the first GPU when one
// is visible, else the CPU), as a device string for load_hf_model. InputError naming `option` for
// anything else, or a GPU that is not there.
std::string resolve_device(const std::string& value, const std::string& option = "--device");

// InputError "<where>: token id X is outside the model's vocabulary of V (tokenizer and model
// do not match)" for the first id outside [0, vocab_size).
void check_token_ids(const std::vector<int32_t>& ids, int64_t vocab_size, const std::string& where);
void check_token_ids(const std::vector<int64_t>& ids, int64_t vocab_size, const std::string& where);

// context_length is at most the model's max_position_embeddings (InputError naming the key); the
// memory estimate checks it first, so that a context the model refuses is not estimated.
void check_context_fits_model(const ModelOptions& o, const LlamaConfig& model);

// The checks that need only config.json, run before any data is prepared: context_length within
// the model's max_position_embeddings (InputError naming the key) and a tokenizer with no more ids
// than the model's vocab_size (InputError naming `tokenizer_path`). Nothing to check (returns) when
// o.base_dir has no config.json.
void check_data_fits_model(const ModelOptions& o, const Tokenizer& tokenizer, const std::string& tokenizer_path);

// The id that pads packed sequences: the tokenizer's pad id, else its eos id, else 0. Check it
// against the model with check_token_ids like the data.
int32_t padding_id(const Tokenizer& tokenizer);

}  // namespace ringtune
