// Writing trained weights in Hugging Face formats: a PEFT LoRA adapter directory
// (adapter_config.json + adapter_model.safetensors with names like
// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight) or a model directory
// (config.json, model.safetensors, tokenizer files copied from the base model).
// defines: write_peft_adapter, write_hf_model_dir
#pragma once
#include <cstdint>
#include <string>

namespace ringtune {

class LlamaForCausalLM;
struct LoraOptions;

void write_peft_adapter(const std::string& dir, LlamaForCausalLM& model, const LoraOptions& lora,
                        const std::string& base_model_name);

// The model's current weights (merge LoRA first for a merged export) with base_dir's config.json
// and tokenizer files.
// Weights larger than `shard_bytes` are split into model-0000i-of-0000N.safetensors with a
// model.safetensors.index.json, as Hugging Face does.
void write_hf_model_dir(const std::string& dir, LlamaForCausalLM& model, const std::string& base_dir,
                        int64_t shard_bytes = int64_t{5} << 30);

}  // namespace ringtune
