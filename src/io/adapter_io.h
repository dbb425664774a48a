// Putting trained weights onto a base model: a PEFT LoRA adapter directory (adapter_config.json +
// adapter_model.safetensors, as export.h writes and PEFT saves), a ringtune training checkpoint
// (.h5), or a training output_dir (its newest usable checkpoint), and for completeness a Hugging
// Face model directory (full weights, e.g. a merged export). Used by `eval`, `generate --adapter`,
// `export`, and the trainer's initial_adapter_model_ckpt_path.
// defines: AdapterInfo, read_checkpoint, apply_checkpoint, load_adapter
#pragma once
#include <cstdint>
#include <string>

namespace ringtune {

class LlamaForCausalLM;  // model/llama.h
struct LoraOptions;      // model/lora.h
struct CheckpointState;  // src/io/checkpoint.h

// What load_adapter found and did.
struct AdapterInfo {
  std::string kind;         // "peft", "checkpoint" or "hf_model"
  std::string file;         // the file the weights came from (.safetensors or .h5; the dir for hf_model)
  bool lora = false;        // LoRA was applied (else the weights were replaced in full)
  int64_t step = -1;        // checkpoint: optimizer steps done; -1 otherwise
  int64_t tensors = 0;      // tensors copied into the model
  std::string config_yaml;  // checkpoint: the resolved training config stored in it
  std::string base_hash;    // checkpoint: the fingerprint of the base it was trained on
  std::string describe() const;  // one line for the log
};

// `path` is a checkpoint .h5 or an output_dir (then its `latest` checkpoint, or the newest older
// one that loads, as resume: auto picks). Returns the file actually read. InputError names the
// path when there is none or it does not load.
std::string read_checkpoint(const std::string& path, CheckpointState& state);

// Applies a checkpoint to a plain base model: LoRA from the lora_config of the config stored in it
// (when lora_config.r is set) and then every trainable tensor by name; a full fine-tuning
// checkpoint replaces the weights it holds. `file` names the checkpoint in errors (an unknown
// tensor, a shape that differs from the model's). Returns whether LoRA was applied; its options go
// to *lora_out when given.
bool apply_checkpoint(LlamaForCausalLM& model, const CheckpointState& state, const std::string& file,
                      LoraOptions* lora_out = nullptr);

// Loads `path` (any of the forms above) onto `model`, which must be the plain base model (no LoRA
// attached yet; an Error otherwise): LoRA is applied here with the adapter's own options (rank,
// alpha, rsLoRA, targets, modules_to_save, bias, dropout) and the adapter weights copied in.
// Every mismatch — adapter rank vs tensor shapes, a tensor for a module the model lacks or the
// options do not target, a missing adapter tensor, a base model of other shape, an unsupported
// PEFT feature (DoRA, rank_pattern, ...) — is an InputError naming the file and the tensor or key.
// The model's training mode is left as it was; LoRA options go to *lora_out when given.
AdapterInfo load_adapter(LlamaForCausalLM& model, const std::string& path, LoraOptions* lora_out = nullptr);

}  // namespace ringtune
