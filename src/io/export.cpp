// PEFT adapter and Hugging Face model directory writers; see export.h.
#include "src/io/export.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model/llama.h"
#include "model/lora.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace ringtune {

void write_peft_adapter(const std::string& dir, LlamaForCausalLM& model, const LoraOptions& lora,
                        const std::string& base_model_name) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    const bool adapter = is_lora_parameter(name);
    bool saved_module = false;
    for (const auto& m : lora.modules_to_save)
      if (name.find(m + ".") != std::string::npos) saved_module = true;
    if (adapter || saved_module) tensors.emplace_back("base_model.model." + name, p.value().detach().to(torch::kFloat32));
    // Tied embeddings: the model has no separate lm_head parameter; a trained lm_head is the
    // shared matrix, saved under lm_head's name as PEFT does.
    if (name == "model.embed_tokens.weight" && model->config().tie_word_embeddings &&
        std::find(lora.modules_to_save.begin(), lora.modules_to_save.end(), "lm_head") != lora.modules_to_save.end() &&
        !saved_module)
      tensors.emplace_back("base_model.model.lm_head.weight", p.value().detach().to(torch::kFloat32));
  }
  if (tensors.empty()) throw Error("write_peft_adapter: the model has no LoRA adapters");
  write_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  std::vector<std::string> targets = lora.target_modules;
  if (targets.size() == 1 && targets[0] == "all-linear") targets = lora_target_names();
  nlohmann::json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model_name},
      {"r", lora.r},
      {"lora_alpha", lora.lora_alpha},
      {"lora_dropout", lora.lora_dropout},
      {"target_modules", targets},
      {"use_rslora", lora.use_rslora},
      {"bias", lora.bias},
      {"modules_to_save", lora.modules_to_save.empty() ? nlohmann::json(nullptr) : nlohmann::json(lora.modules_to_save)},
      {"init_lora_weights", lora.init_lora_weights == "gaussian" ? nlohmann::json("gaussian")
                                                                  : nlohmann::json(lora.init_lora_weights == "true")},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"use_dora", false},
  };
  atomic_write((fs::path(dir) / "adapter_config.json").string(), cfg.dump(2) + "\n");
}

void write_hf_model_dir(const std::string& dir, LlamaForCausalLM& model, const std::string& base_dir,
                        int64_t shard_bytes) {
  fs::create_directories(dir);
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  int64_t in_shard = 0, total = 0;
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (is_lora_parameter(name)) continue;
    const int64_t bytes = static_cast<int64_t>(p.value().nbytes());
    if (in_shard > 0 && in_shard + bytes > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().emplace_back(name, p.value().detach());
    in_shard += bytes;
    total += bytes;
  }
  if (shards.size() == 1) {
    write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0], {{"format", "pt"}});
  } else {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::json::object()}};
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors((fs::path(dir) / name).string(), shards[i], {{"format", "pt"}});
      for (const auto& [n, t] : shards[i]) index["weight_map"][n] = name;
    }
    atomic_write((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                        "special_tokens_map.json", "generation_config.json"}) {
    const fs::path src = fs::path(base_dir) / f;
    if (fs::exists(src)) atomic_copy(src.string(), (fs::path(dir) / f).string());
  }
}

}  // namespace ringtune
