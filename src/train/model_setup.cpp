// Model setup shared by train, eval and generate; see model_setup.h.
#include "src/train/model_setup.h"

#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "model/cpu_bf16.h"  // defines: cpu_bf16_products_setting
#include "src/error.h"
#include "src/data/data_pipeline.h"  // defines: file_fingerprint
#include "src/io/hf_model.h"
#include "src/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// target_modules as one comparable string ("all-linear" spelled out, sorted).
std::string joined_targets(std::vector<std::string> v) {
  if (std::find(v.begin(), v.end(), "all-linear") != v.end()) {
    v.clear();
    for (const auto& n : lora_target_names())
      if (n != "lm_head") v.push_back(n);
  }
  std::sort(v.begin(), v.end());
  std::string out;
  for (const auto& n : v) out += (out.empty() ? "" : ",") + n;
  return out;
}

// Training on a loaded adapter: a LoRA one continues (lora_config, when set, must repeat it); a
// full-weight one cannot take lora_config.
void continue_adapter(const ModelOptions& o, ModelSetup& s) {
  if (!s.adapter.lora) {
    if (o.lora)
      o.origins.fail("initial_adapter_model_ckpt_path",
                     s.adapter.file + " holds full weights, not an adapter; drop lora_config to continue full fine-tuning");
    return;
  }
  const LoraOptions& from = s.lora_options;
  if (o.lora) {
    auto differs = [&](const std::string& key, const std::string& ours, const std::string& theirs) {
      if (ours != theirs)
        o.origins.fail("lora_config." + key,
                       ours + " does not match the initial adapter's " + theirs + " (" + s.adapter.file + ")");
    };
    differs("r", std::to_string(o.lora->r), std::to_string(from.r));
    differs("lora_alpha", std::to_string(o.lora->lora_alpha), std::to_string(from.lora_alpha));
    differs("use_rslora", o.lora->use_rslora ? "true" : "false", from.use_rslora ? "true" : "false");
    differs("target_modules", joined_targets(o.lora->target_modules), joined_targets(from.target_modules));
    s.lora_options.lora_dropout = o.lora->lora_dropout;
  }
  s.lora_options.seed = o.seed;
  set_lora_dropout(s.model, s.lora_options.lora_dropout);
}

}  // namespace

void check_context_fits_model(const ModelOptions& o, const LlamaConfig& mc) {
  if (o.context_length > mc.max_position_embeddings)
    o.origins.fail("context_length", std::to_string(o.context_length) + " exceeds the model's max_position_embeddings " +
                                         std::to_string(mc.max_position_embeddings));
}

void check_data_fits_model(const ModelOptions& o, const Tokenizer& tokenizer, const std::string& tokenizer_path) {
  std::error_code ec;
  if (o.base_dir.empty() || !std::filesystem::exists(std::filesystem::path(o.base_dir) / "config.json", ec)) return;
  const LlamaConfig mc = read_hf_config(o.base_dir);
  check_context_fits_model(o, mc);
  if (tokenizer.vocab_size() > mc.vocab_size)
    throw InputError(tokenizer_path + ": the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                     " token ids, more than the model's vocab_size " + std::to_string(mc.vocab_size) + " (" + o.base_dir +
                     "/config.json): tokenizer and model do not match");
}

std::string base_fingerprint(const std::string& base_dir) {
  std::vector<std::string> files{(fs::path(base_dir) / "config.json").string()};
  for (const auto& f : hf_weight_files(base_dir)) files.push_back(f);
  return file_fingerprint(files);
}

void check_checkpoint_base(const std::string& stored_hash, const std::string& file, const std::string& base_dir) {
  const std::string trained = stored_hash.substr(0, stored_hash.find('+')), now = base_fingerprint(base_dir);
  if (trained != now)
    throw InputError(file + ": trained on other base weights than " + base_dir + " (fingerprint " + trained +
                     " then, " + now + " now); give the base model it was trained on");
}

ModelSetup setup_model(const ModelOptions& o) {
  ModelSetup s;
  s.model = load_hf_model(o.base_dir, o.dtype, o.device, o.quantization == "nf4");
  const LlamaConfig& mc = s.model->config();
  if (o.dtype == "bfloat16" && s.model->parameters().front().device().is_cpu())
    spdlog::info("bf16 products on this CPU: {}", cpu_bf16_products_setting());  // checked in main()
  if (o.context_length > mc.max_position_embeddings)
    o.origins.fail("context_length", std::to_string(o.context_length) + " exceeds the model's max_position_embeddings " +
                                         std::to_string(mc.max_position_embeddings));
  s.model->gradient_checkpointing = o.gradient_checkpointing;

  if (!o.adapter.empty()) {
    try {
      s.adapter = load_adapter(s.model, o.adapter, &s.lora_options);
    } catch (const InputError& e) {
      if (o.adapter_from_config) o.origins.fail("initial_adapter_model_ckpt_path", e.what());
      throw;
    }
    if (!s.adapter.base_hash.empty()) {
      try {
        check_checkpoint_base(s.adapter.base_hash, s.adapter.file, o.base_dir);
      } catch (const InputError& e) {
        if (o.adapter_from_config) o.origins.fail("initial_adapter_model_ckpt_path", e.what());
        throw;
      }
    }
    s.lora = s.adapter.lora;
    if (o.training) continue_adapter(o, s);
  } else if (o.training && o.lora) {
    s.lora_options = *o.lora;
    try {
      s.adapted = apply_lora(s.model, s.lora_options);
    } catch (const std::invalid_argument& e) {
      o.origins.fail("lora_config.target_modules", e.what());
    }
    s.lora = true;
  }
  if (o.training && !s.lora) {
    if (o.quantization == "nf4")  // a full-weight adapter on an NF4 base (the config check sees only lora_config)
      o.origins.fail("quantization", "NF4 freezes the base weights: full fine-tuning (" +
                                         (s.adapter.kind.empty() ? std::string("no lora_config") : s.adapter.file) +
                                         ") cannot train them");
    for (auto& p : s.model->parameters()) p.set_requires_grad(true);
  }
  return s;
}

int visible_gpus() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

std::string resolve_device(const std::string& value, const std::string& option) {
  const int gpus = visible_gpus();
  if (value == "cpu" || (value == "auto" && gpus == 0)) return "cpu";
  if (value == "auto" || value == "cuda") {
    if (gpus == 0) throw InputError(option + " " + value + ": no CUDA device is visible (CPU-only libtorch or no GPU)");
    return "cuda:0";
  }
  if (value.rfind("cuda:", 0) == 0) {
    size_t used = 0;
    int index = -1;
    try {
      index = std::stoi(value.substr(5), &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != value.size() - 5 || index < 0)
      throw InputError(option + " " + value + ": expected cuda:N with N a GPU index");
    if (index >= gpus)
      throw InputError(option + " " + value + ": " + std::to_string(gpus) + " CUDA device(s) visible");
    return value;
  }
  throw InputError(option + " \"" + value + "\" is not a device (cpu, cuda, cuda:N or auto)");
}

namespace {
template <typename Id>
void check_ids(const std::vector<Id>& ids, int64_t vocab_size, const std::string& where) {
  for (const Id id : ids)
    if (id < 0 || static_cast<int64_t>(id) >= vocab_size)
      throw InputError(where + ": token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                       std::to_string(vocab_size) + " (tokenizer and model do not match)");
}
}  // namespace

void check_token_ids(const std::vector<int32_t>& ids, int64_t vocab_size, const std::string& where) {
  check_ids(ids, vocab_size, where);
}

void check_token_ids(const std::vector<int64_t>& ids, int64_t vocab_size, const std::string& where) {
  check_ids(ids, vocab_size, where);
}

int32_t padding_id(const Tokenizer& tokenizer) {
  const auto& special = tokenizer.special_ids();
  return std::max(0, special.pad >= 0 ? special.pad : special.eos);
}

}  // namespace ringtune
