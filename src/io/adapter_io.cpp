// Loading adapters and checkpoints onto a base model; see adapter_io.h.
#include "src/io/adapter_io.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "model/llama.h"
#include "model/lora.h"
#include "src/config/registry.h"
#include "src/error.h"
#include "src/io/checkpoint.h"
#include "src/io/finite_check.h"
#include "src/io/hf_model.h"
#include "src/io/json_file.h"
#include "src/io/peft_config.h"
#include "src/io/safetensors.h"
#include "src/options/model_options.h"  // defines: lora_options_if_set (of the stored config)

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// ---------------------------------------------------------------------------------------------
// Shared: checks and copies

bool has_lora(LlamaForCausalLM& model) {
  for (const auto& p : model->named_parameters())
    if (is_lora_parameter(p.key())) return true;
  return false;
}

std::string shape_str(const torch::Tensor& t) { return c10::str(t.sizes()); }

// Copies `tensors` into the model's parameters of the same names. `required` names the parameters
// that must all be given. `hint` is appended to shape errors (e.g. the adapter's rank).
int64_t copy_named(LlamaForCausalLM& model, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                   const std::set<std::string>& required, const std::string& file, const std::string& hint) {
  auto params = model->named_parameters();
  torch::NoGradGuard no_grad;
  std::set<std::string> done;
  for (const auto& [name, t] : tensors) {
    if (!params.contains(name)) {
      std::string why = is_lora_parameter(name) ? "the adapter options do not target this module, or the model lacks it"
                                                : "the base model has no such parameter";
      throw InputError(file + ": tensor " + name + " does not fit the model (" + why + ")");
    }
    if (!done.insert(name).second) throw InputError(file + ": tensor " + name + " appears twice");
    torch::Tensor& dst = params[name];
    if (dst.sizes() != t.sizes())
      throw InputError(file + ": tensor " + name + " has shape " + shape_str(t) + ", the model expects " +
                       shape_str(dst) + hint);
    if (!t.is_floating_point())
      throw InputError(file + ": tensor " + name + " is not a floating-point tensor");
    require_finite(t, file, name);
    dst.copy_(t);
  }
  for (const auto& name : required)
    if (!done.count(name)) throw InputError(file + ": missing tensor " + name);
  return static_cast<int64_t>(done.size());
}

// ---------------------------------------------------------------------------------------------
// PEFT adapter directories

// PEFT's saved name -> ringtune parameter name: drops "base_model.model.", an adapter name
// segment ".default", and modules_to_save's wrapper ".modules_to_save" (PEFT versions differ in
// which of these they keep). Empty when the name does not have PEFT's prefix.
std::string peft_to_param_name(std::string name) {
  const std::string prefix = "base_model.model.";
  if (name.rfind(prefix, 0) != 0) return "";
  name = name.substr(prefix.size());
  for (const std::string seg : {".modules_to_save.default.", ".modules_to_save.", ".default."}) {
    size_t pos;
    while ((pos = name.find(seg)) != std::string::npos) name.replace(pos, seg.size(), ".");
  }
  const std::string tail = ".default";  // lora_embedding_A.default (a ParameterDict's key)
  if (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
    name.resize(name.size() - tail.size());
  return name;
}

AdapterInfo load_peft_dir(LlamaForCausalLM& model, const std::string& dir, LoraOptions* lora_out) {
  const std::string cfg_file = (fs::path(dir) / "adapter_config.json").string();
  const std::string st_file = (fs::path(dir) / "adapter_model.safetensors").string();
  LoraOptions o = read_peft_config(cfg_file);
  if (!fs::exists(st_file)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin"))
      throw InputError(dir + ": only adapter_model.bin (pickle) is there; save the adapter with safetensors");
    throw InputError(st_file + ": missing");
  }
  SafeTensorsFile f(st_file);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const bool tied = model->config().tie_word_embeddings;
  auto params = model->named_parameters();
  for (const auto& [stored, info] : f.tensors()) {
    std::string name = peft_to_param_name(stored);
    if (name.empty()) throw InputError(st_file + ": tensor " + stored + " does not start with base_model.model.");
    if (tied && name == "lm_head.weight" && !params.contains(name)) name = "model.embed_tokens.weight";
    tensors.emplace_back(name, f.load(stored, static_cast<int>(torch::kFloat32)));
  }
  try {
    apply_lora(model, o);
  } catch (const std::invalid_argument& e) {
    throw InputError(cfg_file + ": " + e.what());
  }
  params = model->named_parameters();
  std::set<std::string> required;
  for (const auto& p : params) {
    bool saved_module = false;
    for (const auto& m : o.modules_to_save)
      if (p.key().find(m + ".") != std::string::npos) saved_module = true;
    if (is_lora_parameter(p.key()) || saved_module) required.insert(p.key());
  }
  AdapterInfo info;
  info.kind = "peft";
  info.file = st_file;
  info.lora = true;
  info.tensors = copy_named(model, tensors, required, st_file,
                            " (r=" + std::to_string(o.r) + " in adapter_config.json; other rank or other base model?)");
  if (lora_out) *lora_out = o;
  return info;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Checkpoints

std::string AdapterInfo::describe() const {
  std::string s = kind + " " + file + (lora ? " (LoRA" : " (full weights");
  if (step >= 0) s += ", step " + std::to_string(step);
  return s + ", " + std::to_string(tensors) + " tensors)";
}

std::string read_checkpoint(const std::string& path, CheckpointState& state) {
  if (!fs::exists(path)) throw InputError(path + ": no such checkpoint file or output_dir");
  if (fs::is_directory(path)) {
    const std::string file = find_resume_checkpoint(path, state);
    if (file.empty()) throw InputError(path + ": no usable checkpoint in " + (fs::path(path) / "checkpoints").string());
    return file;
  }
  state = load_checkpoint(path);
  return path;
}

bool apply_checkpoint(LlamaForCausalLM& model, const CheckpointState& state, const std::string& file,
                      LoraOptions* lora_out) {
  if (has_lora(model)) throw Error("apply_checkpoint: the model already has LoRA adapters (pass the plain base model)");
  const std::optional<LoraOptions> stored =
      lora_options_if_set(load_config_from_string(state.config_yaml, {}, file + " (stored config)"));
  const bool lora = stored.has_value();
  const LoraOptions o = stored.value_or(LoraOptions{});
  std::set<std::string> required;
  if (lora) {
    try {
      apply_lora(model, o);
    } catch (const std::invalid_argument& e) {
      throw InputError(file + ": stored lora_config: " + e.what());
    }
    for (const auto& p : model->named_parameters())
      if (p.value().requires_grad()) required.insert(p.key());
  } else {
    for (const auto& p : model->named_parameters()) required.insert(p.key());
  }
  const std::string hint = lora ? " (r=" + std::to_string(o.r) + " in the stored lora_config; other base model?)"
                                : " (other base model?)";
  copy_named(model, state.trainable, required, file, hint);
  if (lora_out) *lora_out = o;
  return lora;
}

AdapterInfo load_adapter(LlamaForCausalLM& model, const std::string& path, LoraOptions* lora_out) {
  if (has_lora(model)) throw Error("load_adapter: the model already has LoRA adapters (pass the plain base model)");
  if (!fs::exists(path)) throw InputError(path + ": no such adapter directory, checkpoint or output_dir");
  const bool training = model->is_training();
  AdapterInfo info;
  if (fs::is_directory(path) && fs::exists(fs::path(path) / "adapter_config.json")) {
    info = load_peft_dir(model, path, lora_out);
  } else if (fs::is_directory(path) && !fs::exists(fs::path(path) / "checkpoints") &&
             fs::exists(fs::path(path) / "config.json")) {
    load_hf_weights(path, model);  // a merged or fully fine-tuned Hugging Face model directory
    info.kind = "hf_model";
    info.file = path;
    info.tensors = static_cast<int64_t>(model->named_parameters().size());
  } else {
    if (fs::is_directory(path) && !fs::exists(fs::path(path) / "checkpoints"))
      throw InputError(path + ": neither a PEFT adapter directory (adapter_config.json), a training output_dir "
                              "(checkpoints/) nor a model directory (config.json)");
    CheckpointState st;
    info.file = read_checkpoint(path, st);
    info.kind = "checkpoint";
    info.step = st.step;
    info.config_yaml = st.config_yaml;
    info.base_hash = st.base_hash;
    info.lora = apply_checkpoint(model, st, info.file, lora_out);
    info.tensors = static_cast<int64_t>(st.trainable.size());
  }
  model->train(training);
  spdlog::debug("loaded {}", info.describe());
  return info;
}

}  // namespace ringtune
