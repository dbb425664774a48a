// PEFT adapter_config.json; see peft_config.h.
#include "src/io/peft_config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "model/lora.h"
#include "src/error.h"
#include "src/io/json_file.h"

namespace ringtune {

namespace {

std::string json_where(const std::string& file, const std::string& key) { return file + ": " + key; }

const char* json_type_name(const nlohmann::json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  return "null";
}

// j[key] as T; a value of another type is an InputError naming the field, what it holds and what
// PEFT writes there.
template <class T>
T field(const nlohmann::json& j, const std::string& file, const std::string& key, const char* expected) {
  const nlohmann::json& v = j.at(key);
  try {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!v.is_number_integer()) throw std::invalid_argument("");
    } else if constexpr (std::is_same_v<T, double>) {
      if (!v.is_number()) throw std::invalid_argument("");
    }
    return v.get<T>();
  } catch (const std::exception&) {
    throw InputError(json_where(file, key) + ": expected " + expected + ", got " + json_type_name(v) + " " +
                     v.dump().substr(0, 60));
  }
}

// An optional boolean flag (absent or null: false).
bool flag(const nlohmann::json& j, const std::string& file, const std::string& key) {
  return j.contains(key) && !j.at(key).is_null() && field<bool>(j, file, key, "true or false");
}

}  // namespace

LoraOptions read_peft_config(const std::string& file) {
  const nlohmann::json j = read_json_file(file);
  if (!j.is_object()) throw InputError(file + ": expected a JSON object");
  LoraOptions o;
  o.init_lora_weights = "true";  // irrelevant: every adapter weight is then overwritten
  o.lora_dropout = 0.0;
  try {
    const std::string type = j.contains("peft_type") ? field<std::string>(j, file, "peft_type", "a string") : "LORA";
    if (type != "LORA") throw InputError(json_where(file, "peft_type") + ": \"" + type + "\" is not supported (only LORA)");
    if (!j.contains("r")) throw InputError(json_where(file, "r") + ": missing");
    o.r = field<int64_t>(j, file, "r", "an integer");
    o.lora_alpha = j.contains("lora_alpha") ? field<double>(j, file, "lora_alpha", "a number") : 8.0;  // PEFT's default
    if (j.contains("lora_dropout") && !j.at("lora_dropout").is_null())
      o.lora_dropout = field<double>(j, file, "lora_dropout", "a number");
    o.use_rslora = flag(j, file, "use_rslora");
    if (j.contains("bias") && !j.at("bias").is_null()) o.bias = field<std::string>(j, file, "bias", "a string");
    const auto& tm = j.contains("target_modules") ? j.at("target_modules") : nlohmann::json();
    if (tm.is_string()) {
      if (tm.get<std::string>() != "all-linear")
        throw InputError(json_where(file, "target_modules") + ": a regular expression (\"" + tm.get<std::string>() +
                         "\") is not supported; give a list of module names");
      o.target_modules = {"all-linear"};
    } else if (tm.is_array() && !tm.empty()) {
      o.target_modules = field<std::vector<std::string>>(j, file, "target_modules", "a list of module names");
    } else {
      throw InputError(json_where(file, "target_modules") + ": missing or empty");
    }
    o.modules_to_save.clear();
    if (j.contains("modules_to_save") && !j.at("modules_to_save").is_null())
      o.modules_to_save = field<std::vector<std::string>>(j, file, "modules_to_save", "a list of module names");
    if (flag(j, file, "use_dora")) throw InputError(json_where(file, "use_dora") + ": DoRA adapters are not supported");
    if (flag(j, file, "fan_in_fan_out"))
      throw InputError(json_where(file, "fan_in_fan_out") + ": true is not supported (Llama uses nn.Linear)");
    for (const char* k : {"rank_pattern", "alpha_pattern"})
      if (j.contains(k) && !j.at(k).is_null() && !j.at(k).empty())
        throw InputError(json_where(file, k) + ": per-module ranks/alphas are not supported");
    if (j.contains("layers_to_transform") && !j.at("layers_to_transform").is_null())
      throw InputError(json_where(file, "layers_to_transform") + ": not supported (adapters on every layer only)");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file + ": a field has the wrong type (" + std::string(e.what()) + ")");
  }
  try {
    validate_lora_options(o);
  } catch (const std::invalid_argument& e) {
    throw InputError(file + ": " + e.what());
  }
  return o;
}

}  // namespace ringtune
