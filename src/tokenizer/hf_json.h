// Checked access to fields of a tokenizer.json component: every failure is an InputError naming
// the file, the component and the field, e.g.
//   tokenizer.json: normalizer Replace: "content" must be a string
// defines: JsonContext, json_field, json_string, json_string_or, json_bool_or, json_int_or,
//          json_array, json_type, json_pattern_source
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "src/error.h"

namespace ringtune {

// Where a JSON object sits, for messages: the file and a description of the component.
struct JsonContext {
  std::string file;       // path of the tokenizer.json
  std::string component;  // e.g. `normalizer Replace`

  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(file + ": " + (component.empty() ? "" : component + ": ") + what);
  }
};

inline const nlohmann::json& json_field(const nlohmann::json& obj, const char* key,
                                        const JsonContext& ctx) {
  if (!obj.is_object()) ctx.fail("expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end()) ctx.fail(std::string("missing \"") + key + "\"");
  return *it;
}

inline std::string json_string(const nlohmann::json& obj, const char* key, const JsonContext& ctx) {
  const auto& v = json_field(obj, key, ctx);
  if (!v.is_string()) ctx.fail(std::string("\"") + key + "\" must be a string");
  return v.get<std::string>();
}

// Optional string: `fallback` when absent or null.
inline std::string json_string_or(const nlohmann::json& obj, const char* key,
                                  const std::string& fallback, const JsonContext& ctx) {
  if (!obj.is_object()) ctx.fail("expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) ctx.fail(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

inline bool json_bool_or(const nlohmann::json& obj, const char* key, bool fallback,
                         const JsonContext& ctx) {
  if (!obj.is_object()) ctx.fail("expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) ctx.fail(std::string("\"") + key + "\" must be true or false");
  return it->get<bool>();
}

inline int64_t json_int_or(const nlohmann::json& obj, const char* key, int64_t fallback,
                           const JsonContext& ctx) {
  if (!obj.is_object()) ctx.fail("expected a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) ctx.fail(std::string("\"") + key + "\" must be an integer");
  return it->get<int64_t>();
}

inline const nlohmann::json& json_array(const nlohmann::json& obj, const char* key,
                                        const JsonContext& ctx) {
  const auto& v = json_field(obj, key, ctx);
  if (!v.is_array()) ctx.fail(std::string("\"") + key + "\" must be an array");
  return v;
}

// The "type" of a component object.
inline std::string json_type(const nlohmann::json& obj, const JsonContext& ctx) {
  return json_string(obj, "type", ctx);
}

// A pattern object {"String": "..."} or {"Regex": "..."}: sets *is_regex and returns the text.
inline std::string json_pattern_source(const nlohmann::json& obj, const char* key, bool* is_regex,
                                       const JsonContext& ctx) {
  const auto& p = json_field(obj, key, ctx);
  if (p.is_object()) {
    if (const auto it = p.find("String"); it != p.end() && it->is_string()) {
      *is_regex = false;
      return it->get<std::string>();
    }
    if (const auto it = p.find("Regex"); it != p.end() && it->is_string()) {
      *is_regex = true;
      return it->get<std::string>();
    }
  }
  ctx.fail(std::string("\"") + key + "\" must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace ringtune
