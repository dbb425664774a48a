// Run-dependent warnings for llmforge keys; see compat_options.h.
#include "src/options/compat_options.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "src/config/key_origins.h"
#include "src/config/registry.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

std::string at_key(const KeyOrigins& origins, const std::string& key) {
  return origins.origin(key) + ": key \"" + key + "\"";
}

// What a DeepSpeed JSON's zero_optimization.stage shards, in ZeRO's terms.
std::string zero_stage_words(int64_t stage) {
  switch (stage) {
    case 0: return "ZeRO stage 0 (nothing sharded)";
    case 1: return "ZeRO stage 1 (optimizer state sharded)";
    case 2: return "ZeRO stage 2 (optimizer state and gradients sharded)";
    default: return "ZeRO stage " + std::to_string(stage) + " (optimizer state, gradients and parameters sharded)";
  }
}

std::string deepspeed_warning(const Config& c, const KeyOrigins& origins) {
  const auto j = nlohmann::json::parse(c.get_string("deepspeed"), nullptr, false);
  std::string path;
  if (j.is_string()) path = j.get<std::string>();
  if (j.is_object() && j.contains("config_path") && j["config_path"].is_string()) path = j["config_path"].get<std::string>();
  std::string asked = "its ZeRO stage is unknown (no config_path)";
  if (!path.empty()) {
    fs::path file(path);
    const Origin& o = c.origin("deepspeed");
    if (file.is_relative() && o.kind == Origin::Kind::File) file = fs::path(o.file).parent_path() / file;
    std::ifstream in(file);
    const auto ds = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    if (!in)
      asked = path + " is not readable here, so the ZeRO stage it asks for is unknown";
    else if (ds.is_object() && ds.contains("zero_optimization") && ds["zero_optimization"].is_object() &&
             ds["zero_optimization"].contains("stage") && ds["zero_optimization"]["stage"].is_number_integer()) {
      const auto& zero = ds["zero_optimization"];
      asked = path + " asks for " + zero_stage_words(zero["stage"].get<int64_t>());
      for (const char* offload : {"offload_optimizer", "offload_param"})
        if (zero.contains(offload)) asked += std::string(" with ") + offload + " (not done: state stays on the device)";
    }
    else
      asked = path + " names no zero_optimization.stage";
  }
  const int64_t stage = c.is_explicit("distributed.zero_stage") ? c.get_int("distributed.zero_stage") : 1;
  return at_key(origins, "deepspeed") + ": ringtune does not run DeepSpeed; " + asked +
         "; ringtune uses distributed.zero_stage " + std::to_string(stage) +
         (stage == 1 ? " (its ZeRO-1: optimizer state sharded over ranks, gradients and parameters whole on each)"
                     : " (nothing sharded)") +
         (c.is_explicit("distributed.zero_stage") ? ", as set" : "");
}

}  // namespace

std::vector<std::string> compat_warnings(const Config& c, int world_size) {
  const KeyOrigins origins(c);
  std::vector<std::string> out;
  if (world_size > 0 && c.is_set("num_devices") && c.get_int("num_devices") != world_size) {
    const int64_t n = c.get_int("num_devices");
    out.push_back(at_key(origins, "num_devices") + ": " + std::to_string(n) + " devices, but this run has " +
                  std::to_string(world_size) + " rank(s): ringtune's ranks come from the launcher (`mpirun -np " +
                  std::to_string(n) + " ringtune train CONFIG`, or srun with " + std::to_string(n) +
                  " tasks, one per GPU); the global batch stays train_batch_size_per_device x "
                  "gradient_accumulation_steps x " + std::to_string(n) + " as in llmforge");
  }
  if (c.is_set("deepspeed")) out.push_back(deepspeed_warning(c, origins));
  if (c.is_set("lora_config.r") && c.get_bool("lora_config.fan_in_fan_out"))
    out.push_back(at_key(origins, "lora_config.fan_in_fan_out") +
                  ": true is for (in, out) weights such as GPT-2's Conv1D; the Llama-family projections are "
                  "(out, in), so it is reset to false, as PEFT does");
  if (c.is_set("min_update_steps") && (c.is_explicit("num_epochs") || c.is_set("max_steps")))
    out.push_back(at_key(origins, "min_update_steps") + ": not used, because " +
                  (c.is_set("max_steps") ? "max_steps" : "num_epochs") + " is given (as in llmforge)");
  return out;
}

}  // namespace ringtune
