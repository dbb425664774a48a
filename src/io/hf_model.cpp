// Reading Hugging Face Llama-family checkpoints. config.json keys are checked for type and value;
// weights are matched by name against the model's parameters: missing, unexpected and mis-shaped
// tensors are errors naming the tensor and the file.
#include "src/io/hf_model.h"

#include <spdlog/spdlog.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <torch/torch.h>

#include "src/cpu_pool.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "src/io/finite_check.h"
#include "src/io/json_file.h"
#include "src/io/safetensors.h"
#include "model/cpu_bf16.h"
#include "model/llama.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// Typed, optional lookups in config.json with errors naming the key.
struct ConfigReader {
  const nlohmann::json& j;
  const std::string& path;

  [[noreturn]] void bad(const std::string& key, const std::string& expected) const {
    throw InputError(path + ": key \"" + key + "\": expected " + expected + ", got " +
                     j.at(key).dump());
  }
  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }
  int64_t integer(const std::string& key, std::optional<int64_t> dflt) const {
    if (!has(key)) {
      if (!dflt) throw InputError(path + ": missing required key \"" + key + "\"");
      return *dflt;
    }
    const auto& v = j.at(key);
    if (!v.is_number_integer()) bad(key, "an integer");
    return v.get<int64_t>();
  }
  double number(const std::string& key, double dflt) const {
    if (!has(key)) return dflt;
    const auto& v = j.at(key);
    if (!v.is_number()) bad(key, "a number");
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool dflt) const {
    if (!has(key)) return dflt;
    const auto& v = j.at(key);
    if (!v.is_boolean()) bad(key, "true or false");
    return v.get<bool>();
  }
  std::string string(const std::string& key, std::optional<std::string> dflt) const {
    if (!has(key)) {
      if (!dflt) throw InputError(path + ": missing required key \"" + key + "\"");
      return *dflt;
    }
    const auto& v = j.at(key);
    if (!v.is_string()) bad(key, "a string");
    return v.get<std::string>();
  }
};

}  // namespace

LlamaConfig read_hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  const nlohmann::json j = read_json_file(path);
  if (!j.is_object()) throw InputError(path + ": expected a JSON object");
  ConfigReader r{j, path};
  LlamaConfig c;
  c.model_type = r.string("model_type", std::nullopt);
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    throw InputError(path + ": model_type \"" + c.model_type +
                     "\" is not supported (supported: llama, mistral, qwen2)");
  }
  c.vocab_size = r.integer("vocab_size", std::nullopt);
  c.hidden_size = r.integer("hidden_size", std::nullopt);
  c.intermediate_size = r.integer("intermediate_size", std::nullopt);
  c.num_hidden_layers = r.integer("num_hidden_layers", std::nullopt);
  c.num_attention_heads = r.integer("num_attention_heads", std::nullopt);
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  c.head_dim = r.integer("head_dim", 0);
  c.max_position_embeddings = r.integer("max_position_embeddings", 2048);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.rope_theta = r.number("rope_theta", 10000.0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases and its config has no attention_bias key.
  c.attention_bias = r.boolean("attention_bias", c.model_type == "qwen2");
  c.mlp_bias = r.boolean("mlp_bias", false);
  if (r.has("sliding_window") && r.boolean("use_sliding_window", c.model_type == "mistral"))
    c.sliding_window = r.integer("sliding_window", 0);
  c.bos_token_id = r.integer("bos_token_id", -1);
  if (r.has("eos_token_id") && j.at("eos_token_id").is_array()) {
    const auto& a = j.at("eos_token_id");
    if (a.empty() || !a[0].is_number_integer()) r.bad("eos_token_id", "an integer or a list of integers");
    c.eos_token_id = a[0].get<int64_t>();
  } else {
    c.eos_token_id = r.integer("eos_token_id", -1);
  }
  if (r.has("hidden_act")) {
    const std::string act = r.string("hidden_act", "silu");
    if (act != "silu" && act != "swish")
      throw InputError(path + ": hidden_act \"" + act + "\" is not supported (silu only)");
  }
  if (r.has("rope_scaling")) {
    const auto& rs = j.at("rope_scaling");
    if (!rs.is_object()) r.bad("rope_scaling", "an object or null");
    ConfigReader sr{rs, path};
    std::string type = sr.has("rope_type") ? sr.string("rope_type", "") : sr.string("type", "none");
    if (type == "default") type = "none";
    c.rope_scaling.type = type;
    c.rope_scaling.factor = sr.number("factor", 1.0);
    c.rope_scaling.low_freq_factor = sr.number("low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = sr.number("high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings =
        sr.integer("original_max_position_embeddings", 8192);
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw InputError(path + ": " + e.what());
  }
  return c;
}

void write_hf_config(const std::string& dir, const LlamaConfig& c) {
  const std::string architecture = c.model_type == "mistral" ? "MistralForCausalLM"
                                   : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                                                             : "LlamaForCausalLM";
  nlohmann::ordered_json j = {
      {"architectures", {architecture}},
      {"model_type", c.model_type},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
      {"torch_dtype", "float32"},
  };
  if (c.model_type == "qwen2") j["attention_bias"] = true;
  atomic_write((fs::path(dir) / "config.json").string(), j.dump(2) + "\n");
}

std::vector<std::string> hf_weight_files(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const auto j = read_json_file(index.string());
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index.string() + ": missing \"weight_map\" object");
    std::set<std::string> files;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw InputError(index.string() + ": weight_map entry \"" + it.key() + "\" is not a file name");
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw InputError(index.string() + ": weight_map entry \"" + it.key() + "\" names a path outside the directory: " + f);
      files.insert(f);
    }
    std::vector<std::string> out;
    for (const auto& f : files) {
      const fs::path p = fs::path(dir) / f;
      if (!fs::exists(p)) throw InputError(index.string() + ": shard " + f + " does not exist");
      out.push_back(p.string());
    }
    if (out.empty()) throw InputError(index.string() + ": weight_map is empty");
    return out;
  }
  if (fs::exists(single)) return {single.string()};
  throw InputError(dir + ": no model.safetensors or model.safetensors.index.json");
}

namespace {

// Where a safetensors file's data section starts: after the 8-byte little-endian header length
// and the header (SafeTensorsFile has validated both).
uint64_t data_section_start(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char len[8] = {0};
  in.read(reinterpret_cast<char*>(len), 8);
  if (!in) throw EnvironmentError(file + ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  return 8 + n;
}

}  // namespace

void load_hf_weights(const std::string& dir, LlamaForCausalLM& model) {
  std::vector<std::unique_ptr<SafeTensorsFile>> files;
  std::map<std::string, const SafeTensorsFile*> where;
  std::map<std::string, uint64_t> data_start;  // file -> where its data section starts, read once
  for (const auto& f : hf_weight_files(dir)) {
    files.push_back(std::make_unique<SafeTensorsFile>(f));
    data_start[f] = data_section_start(f);
    for (const auto& [name, info] : files.back()->tensors()) {
      auto [it, fresh] = where.emplace(name, files.back().get());
      if (!fresh)
        throw InputError(f + ": tensor \"" + name + "\" also appears in " + it->second->path());
    }
  }
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  const auto t0 = std::chrono::steady_clock::now();
  double check_s = 0;
  int fused = 0;
  std::map<std::string, LinearImpl*> nf4;  // weight name -> Linear marked NF4
  for (const auto& [name, lin] : nf4_linears(model)) nf4[name + ".weight"] = lin;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    auto it = where.find(name);
    if (it == where.end()) throw InputError(dir + ": missing tensor \"" + name + "\"");
    const TensorInfo& info = it->second->info(name);
    const auto q = nf4.find(name);
    // An NF4 weight is read in full, in the model's dtype, into a temporary and quantized.
    torch::Tensor temp = q == nf4.end() ? torch::Tensor()
                                        : torch::empty(q->second->nf4_shape(), p.value().options());
    torch::Tensor& dst = q == nf4.end() ? p.value() : temp;
    if (info.shape != dst.sizes().vec()) {
      throw InputError(it->second->path() + ": tensor \"" + name + "\" has shape " +
                       c10::str(c10::IntArrayRef(info.shape)) + ", expected " +
                       c10::str(dst.sizes()) + " from config.json");
    }
    if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16" && info.dtype != "F64") {
      throw InputError(it->second->path() + ": tensor \"" + name + "\" has dtype " + info.dtype +
                       ", expected a floating type");
    }
    const auto st = dst.scalar_type();
    const int stored = info.dtype == "F32" ? static_cast<int>(torch::kFloat32)
                       : info.dtype == "BF16" ? static_cast<int>(torch::kBFloat16)
                       : info.dtype == "F16"  ? static_cast<int>(torch::kFloat16)
                                              : -1;
    const bool float_dst = st == torch::kFloat32 || st == torch::kBFloat16 || st == torch::kFloat16;
    const std::string& file = it->second->path();
    if (stored >= 0 && float_dst && dst.device().is_cpu() && dst.is_contiguous()) {
      // One pass from the file into the parameter, the NaN/infinity test riding on it.
      if (read_floats_checked(file, data_start.at(file) + info.begin, stored, dst, &check_s) > 0)
        require_finite(dst, file, name);
      ++fused;
    } else {  // converted (or to a GPU): the test is a pass of its own
      dst.copy_(it->second->load(name, static_cast<int>(st)));
      require_finite(dst, file, name, &check_s);
    }
    if (q != nf4.end()) {
      q->second->set_nf4(nf4_quantize(temp));
      temp = torch::Tensor();
#if defined(__GLIBC__)
      // The full-size temporaries (tens of MiB, under glibc's grown mmap threshold) come from the
      // heap, between the small NF4 tensors kept: hand their pages back, or the heap's holes keep
      // the process at about the size of the unquantized model (measured: peak 1.9 GiB instead of
      // 1.1 GiB for a 1.1B model).
      malloc_trim(0);
#endif
      cpu_pool_trim();  // the same for the temporaries of 256 KiB and more (src/cpu_pool.h)
    }
    used.insert(name);
  }
  for (const auto& [name, file] : where) {
    if (used.count(name)) continue;
    const bool rotary_buffer = name.find("rotary_emb.inv_freq") != std::string::npos;
    const bool tied_head = name == "lm_head.weight" && model->config().tie_word_embeddings;
    if (rotary_buffer || tied_head) continue;  // derived or tied: Hugging Face ignores them too
    throw InputError(file->path() + ": unexpected tensor \"" + name + "\" (not part of a " +
                     model->config().model_type + " model with this config.json)");
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::debug("weights of {} loaded in {:.3f} s ({} of {} tensors read in one pass); testing them for NaN and "
                "infinity took {:.3f} s ({:.2f}% of the load)",
                dir, load_s, fused, used.size(), check_s, load_s > 0 ? 100.0 * check_s / load_s : 0.0);
}

LlamaForCausalLM load_hf_model(const std::string& dir, const std::string& dtype,
                               const std::string& device, bool nf4) {
  const LlamaConfig cfg = read_hf_config(dir);
  torch::ScalarType st;
  if (dtype == "float32") st = torch::kFloat32;
  else if (dtype == "bfloat16") st = torch::kBFloat16;
  else if (dtype == "float16") st = torch::kFloat16;
  else throw InputError("dtype \"" + dtype + "\" is not one of float32, bfloat16, float16");
  if (st == torch::kFloat16 && torch::Device(device).is_cpu() && !cpu_has_float16_products())
    throw InputError("dtype \"float16\": this libtorch has no float16 matrix product on the CPU; use bfloat16 or "
                     "float32 there, or a GPU (--device cuda)");
  LlamaForCausalLM model(cfg);
  if (nf4) mark_nf4_linears(model);  // before `to`: their full-size weights are never converted
  {
    // Every parameter is read from the files below (a missing one is an error), so its new
    // storage is allocated in the target dtype and device, not converted from the constructor's
    // uninitialised float32: reading those 4 bytes per value faulted them in, and the CPU block
    // pool kept them cached while the converted copies were made (a 1.1B model loaded as bf16
    // peaked at 4.8 GiB resident instead of about 2.3).
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.numel() > 0) p.set_data(torch::empty(p.sizes(), p.options().device(torch::Device(device)).dtype(st)));
  }
  model->to(torch::Device(device), st);  // the buffers
  load_hf_weights(dir, model);
  return model;
}

}  // namespace ringtune
