// Hugging Face model directories: config.json -> LlamaConfig, and safetensors weights (single
// file or sharded with model.safetensors.index.json) -> a LlamaForCausalLM, with every name and
// shape checked against the config.
#pragma once
#include <string>
#include <vector>

#include "model/llama_config.h"

namespace ringtune {

class LlamaForCausalLM;  // model/llama.h

// Parses and validates DIR/config.json. InputError names the file, the key and the reason.
LlamaConfig read_hf_config(const std::string& dir);

// The weight files of DIR: {"DIR/model.safetensors"} or the shards named by the index.
std::vector<std::string> hf_weight_files(const std::string& dir);

// Builds the model of DIR/config.json and loads its weights, converted to `dtype`
// ("float32" | "bfloat16" | "float16"; float16 on the CPU only where cpu_has_float16_products(),
// else InputError), on `device` ("cpu", "cuda:0", ...). nf4 (QLoRA): the
// decoder layers' projections are quantized to NF4 as each is read (mark_nf4_linears), so no
// full-precision copy of them is ever whole in memory.
LlamaForCausalLM load_hf_model(const std::string& dir, const std::string& dtype = "float32",
                               const std::string& device = "cpu", bool nf4 = false);

// Writes DIR/config.json for `config` with Hugging Face's keys (architectures, model_type, sizes,
// rope, tie, bos/eos, torch_dtype float32); read_hf_config gives the same LlamaConfig back.
void write_hf_config(const std::string& dir, const LlamaConfig& config);

// Loads DIR's weights into an existing model of matching architecture (a Linear marked NF4 is
// quantized from the weight read in the model's dtype).
void load_hf_weights(const std::string& dir, LlamaForCausalLM& model);

}  // namespace ringtune
