// The configuration registry and loader: declarations, YAML flattening with line numbers,
// layered application (defaults < file < overrides), typed getters, YAML dump and help text.
// The keys themselves and the cross-key validator live in keys.cpp.
#include "registry.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>  // defines: YAML::Load, YAML::Node, YAML::Emitter, YAML::Mark
#include <yaml-cpp/depthguard.h>  // defines: YAML::DeepRecursion
#include <yaml-cpp/eventhandler.h>  // defines: YAML::EventHandler

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include "src/error.h"  // defines: Error, InputError
#include "src/file_kind.h"  // defines: file_kind
#include "src/utf8.h"   // defines: utf8::first_invalid

namespace fs = std::filesystem;

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Small text helpers

namespace {

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string last_component(const std::string& name) {
  size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string parent_of(const std::string& name) {
  size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("lenght").
size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

// How many edits a typo of this length may have and still get a suggestion.
size_t typo_budget(size_t length) {
  if (length <= 2) return 0;
  if (length <= 5) return 1;
  if (length <= 9) return 2;
  return 3;
}

// The closest candidate to `typed`, comparing both the full dotted names and their last
// components (so a key put in the wrong section is found); falls back to a candidate whose last
// component contains the typed one ("epochs" -> "num_epochs"). Empty when nothing is close.
std::string closest(const std::string& typed, const std::vector<std::string>& candidates) {
  const std::string typed_last = last_component(typed);
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const std::string& c : candidates) {
    size_t d_full = edit_distance(typed, c);
    size_t d = d_full <= typo_budget(typed.size()) ? d_full : SIZE_MAX;
    size_t d_last = edit_distance(typed_last, last_component(c));
    if (d_last <= typo_budget(typed_last.size())) d = std::min(d, d_last);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (!best.empty()) return best;
  if (typed_last.size() < 4) return "";
  for (const std::string& c : candidates) {
    std::string c_last = last_component(c);
    bool contains = c_last.find(typed_last) != std::string::npos ||
                    (c_last.size() >= 4 && typed_last.find(c_last) != std::string::npos);
    if (contains && (best.empty() || c_last.size() < last_component(best).size())) best = c;
  }
  return best;
}

std::string did_you_mean(const std::string& suggestion) {
  return suggestion.empty() ? "" : " (did you mean " + in_quotes(suggestion) + "?)";
}

// Shortest decimal text that reads back as the same double.
std::string format_double(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string out = buf;
  // Keep floats visibly floats in dumps and help: 16 -> 16.0.
  if (out.find_first_of(".eEni") == std::string::npos) out += ".0";
  return out;
}

std::string format_value(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return std::get<bool>(v) ? "true" : "false";
    case 1: return std::to_string(std::get<int64_t>(v));
    case 2: return format_double(std::get<double>(v));
    case 3: return std::get<std::string>(v);
    default: return "[" + join(std::get<std::vector<std::string>>(v), ", ") + "]";
  }
}

bool value_fits(KeyType type, const ConfigValue& v) {
  switch (type) {
    case KeyType::Bool: return std::holds_alternative<bool>(v);
    case KeyType::Int: return std::holds_alternative<int64_t>(v);
    case KeyType::Float: return std::holds_alternative<double>(v);
    case KeyType::String:
    case KeyType::Path:
    case KeyType::Map:
    case KeyType::Any: return std::holds_alternative<std::string>(v);
    case KeyType::StringList: return std::holds_alternative<std::vector<std::string>>(v);
  }
  return false;
}

std::optional<bool> parse_bool(const std::string& s) {
  std::string l = lower(s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return std::nullopt;
}

std::optional<int64_t> parse_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  for (size_t j = i; j < s.size(); ++j)
    if (!std::isdigit(static_cast<unsigned char>(s[j]))) return std::nullopt;
  errno = 0;
  long long v = std::strtoll(s.c_str(), nullptr, 10);
  if (errno == ERANGE) return std::nullopt;
  return static_cast<int64_t>(v);
}

std::optional<double> parse_double(const std::string& s) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(begin, &end);
  if (end != begin + s.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  // strtod also reads hexadecimal; YAML users mean decimal.
  if (s.find_first_of("xX") != std::string::npos) return std::nullopt;
  return v;
}

std::string home_dir() {
  const char* home = std::getenv("HOME");
  return home ? home : "";
}

// Absolute, lexically normal path; relative to `base_dir` (itself made absolute against the
// working directory, which is also the base when `base_dir` is empty).
std::string resolve_path(const std::string& value, const std::string& base_dir) {
  std::string s = value;
  if ((s == "~" || s.rfind("~/", 0) == 0) && !home_dir().empty()) s = home_dir() + s.substr(1);
  fs::path p(s);
  if (p.is_relative()) p = fs::absolute(base_dir.empty() ? fs::path(".") : fs::path(base_dir)) / p;
  std::string out = p.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Declarations

const char* key_type_name(KeyType type) {
  switch (type) {
    case KeyType::Bool: return "bool";
    case KeyType::Int: return "int";
    case KeyType::Float: return "float";
    case KeyType::String: return "string";
    case KeyType::StringList: return "list of strings";
    case KeyType::Path: return "path";
    case KeyType::Map: return "map";
    case KeyType::Any: return "any value";
  }
  return "?";
}

KeyDef& KeyDef::def_value(ConfigValue value) {
  if (!value_fits(type, value))
    throw Error("config key " + in_quotes(name) + ": default " + in_quotes(format_value(value)) +
                " is not a " + key_type_name(type));
  default_value = std::move(value);
  return *this;
}

KeyDef& KeyDef::require() {
  required = true;
  return *this;
}

KeyDef& KeyDef::one_of(std::vector<std::string> values) {
  if (type != KeyType::String && type != KeyType::StringList && type != KeyType::Path)
    throw Error("config key " + in_quotes(name) + ": allowed values need a string key");
  choices = std::move(values);
  return *this;
}

KeyDef& KeyDef::only_if_set(std::string key) {
  active_if = std::move(key);
  return *this;
}

KeyDef& KeyDef::accepted_not_used(std::string why) {
  not_used = std::move(why);
  return *this;
}

std::string format_bound(double value) {
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", value);
  else std::snprintf(buf, sizeof buf, "%g", value);
  return buf;
}

KeyDef& KeyDef::at_most(double value) {
  if (type != KeyType::Int && type != KeyType::Float)
    throw Error("config key " + in_quotes(name) + ": an upper bound needs an int or float key");
  max_value = value;
  return *this;
}

KeyDef& Registry::declare(const std::string& name, KeyType type, const std::string& group,
                          const std::string& help) {
  if (name.empty() || name.front() == '.' || name.back() == '.' ||
      name.find("..") != std::string::npos)
    throw Error("config key " + in_quotes(name) + " is not a dotted name");
  if (index_.count(name)) throw Error("config key " + in_quotes(name) + " is declared twice");
  // Only string keys may also be maps (map-or-string); any other key is a leaf.
  for (std::string p = parent_of(name); !p.empty(); p = parent_of(p)) {
    const KeyDef* parent = find(p);
    if (parent && parent->type != KeyType::String)
      throw Error("config key " + in_quotes(name) + " is inside non-string key " + in_quotes(p));
  }
  if (type != KeyType::String && is_section(name))
    throw Error("config key " + in_quotes(name) + " has sub-keys, so it must be a string key");
  index_[name] = keys_.size();
  keys_.push_back(KeyDef{});
  KeyDef& k = keys_.back();
  k.name = name;
  k.type = type;
  k.group = group;
  k.help = help;
  return k;
}

const KeyDef* Registry::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

const KeyDef& Registry::at(const std::string& name) const {
  const KeyDef* k = find(name);
  if (!k)
    throw Error("config key " + in_quotes(name) +
                " is not declared (a bug: declare it in src/config/keys.cpp)");
  return *k;
}

bool Registry::is_section(const std::string& name) const {
  auto it = index_.lower_bound(name + ".");
  return it != index_.end() && it->first.compare(0, name.size() + 1, name + ".") == 0;
}

std::vector<std::string> Registry::sections() const {
  std::vector<std::string> out;
  for (const KeyDef& k : keys_)
    for (std::string p = parent_of(k.name); !p.empty(); p = parent_of(p))
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  return out;
}

std::vector<std::string> Registry::groups() const {
  std::vector<std::string> out;
  for (const KeyDef& k : keys_)
    if (std::find(out.begin(), out.end(), k.group) == out.end()) out.push_back(k.group);
  return out;
}

const Registry& default_registry() {
  static const Registry registry = [] {
    Registry r;
    declare_keys(r);
    return r;
  }();
  return registry;
}

// ---------------------------------------------------------------------------------------------
// Config: typed access

std::string Origin::describe() const {
  switch (kind) {
    case Kind::File: return file + ":" + std::to_string(line);
    case Kind::Override: return "command line: override " + in_quotes(override);
    case Kind::Default: break;
  }
  return file;
}

namespace {

// A key's default as stored: path defaults resolve against the working directory.
ConfigValue resolved_default(const KeyDef& k) {
  ConfigValue v = *k.default_value;
  if (k.type == KeyType::Path) {
    const std::string& s = std::get<std::string>(v);
    if (std::find(k.choices.begin(), k.choices.end(), s) == k.choices.end())
      v = resolve_path(s, "");
  }
  return v;
}

}  // namespace

Config::Config(const Registry& registry) : registry_(&registry), source_name_("<config>") {
  for (const KeyDef& k : registry.keys()) {
    if (!k.default_value) continue;
    Origin o;
    o.file = source_name_;
    ConfigValue v = resolved_default(k);
    values_[k.name] = Entry{v, o, format_value(v)};
  }
}

const Config::Entry* Config::entry(const std::string& key, KeyType want1, KeyType want2) const {
  const KeyDef& k = registry_->at(key);
  if (k.type != want1 && k.type != want2)
    throw Error("config key " + in_quotes(key) + " is a " + key_type_name(k.type) + ", not a " +
                key_type_name(want1) + " (a bug in the caller)");
  auto it = values_.find(key);
  if (it == values_.end())
    throw Error("config key " + in_quotes(key) + " is unset; check is_set() first (a bug)");
  return &it->second;
}

bool Config::get_bool(const std::string& key) const {
  return std::get<bool>(entry(key, KeyType::Bool, KeyType::Bool)->value);
}

int64_t Config::get_int(const std::string& key) const {
  return std::get<int64_t>(entry(key, KeyType::Int, KeyType::Int)->value);
}

double Config::get_double(const std::string& key) const {
  return std::get<double>(entry(key, KeyType::Float, KeyType::Float)->value);
}

std::string Config::get_string(const std::string& key) const {
  const KeyDef& k = registry_->at(key);
  if (k.type == KeyType::Map || k.type == KeyType::Any)
    return std::get<std::string>(entry(key, k.type, k.type)->value);
  return std::get<std::string>(entry(key, KeyType::String, KeyType::Path)->value);
}

std::vector<std::string> Config::get_strings(const std::string& key) const {
  return std::get<std::vector<std::string>>(
      entry(key, KeyType::StringList, KeyType::StringList)->value);
}

bool Config::is_set(const std::string& key) const {
  registry_->at(key);
  return values_.count(key) > 0;
}

bool Config::is_explicit(const std::string& key) const {
  registry_->at(key);
  auto it = values_.find(key);
  return it != values_.end() && it->second.origin.kind != Origin::Kind::Default;
}

const Origin& Config::origin(const std::string& key) const {
  registry_->at(key);
  auto it = values_.find(key);
  if (it != values_.end()) return it->second.origin;
  static const Origin unset_origin;
  return unset_origin;
}

std::string Config::text(const std::string& key) const {
  registry_->at(key);
  auto it = values_.find(key);
  return it == values_.end() ? std::string() : it->second.text;
}

// ---------------------------------------------------------------------------------------------
// Loading: YAML -> flat assignments -> layers

// A YAML node as JSON: plain scalars that read as null, booleans or numbers become those, quoted
// ones stay strings (for Map keys such as chat_template_kwargs).
nlohmann::ordered_json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& kv : node) j[kv.first.Scalar()] = yaml_to_json(kv.second);
    return j;
  }
  if (node.IsSequence()) {
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    for (const auto& v : node) j.push_back(yaml_to_json(v));
    return j;
  }
  if (node.IsNull()) return nullptr;
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (auto b = parse_bool(s)) return *b;
  if (auto i = parse_int(s)) return *i;
  if (auto d = parse_double(s)) return *d;
  return s;
}

// One key set by one layer: the YAML value node and where it was written.
struct Assignment {
  std::string key;
  YAML::Node node;
  Origin origin;   // line: the key's line
  int value_line;  // line of the value node (a block list starts below its key)
};

class ConfigLoader {
 public:
  ConfigLoader(Config& config, std::string base_dir)
      : config_(config), registry_(config.registry()), base_dir_(std::move(base_dir)) {}

  static Config load(const std::string& yaml_text, const std::vector<std::string>& overrides,
                     const std::string& source_name, const std::string& base_dir);

  // Flattens a top-level YAML document from a file.
  std::vector<Assignment> flatten_file(const YAML::Node& root, const std::string& file) {
    std::vector<Assignment> out;
    if (!root || root.IsNull()) return out;  // an empty file: defaults only
    if (!root.IsMap()) {
      throw InputError(file + ":" + std::to_string(line_of(root, 1)) +
                       ": expected a map of `key: value` pairs at the top level");
    }
    Origin o;
    o.kind = Origin::Kind::File;
    o.file = file;
    flatten_map(root, "", o, out);
    return out;
  }

  // Parses one `key=value` argument.
  std::vector<Assignment> flatten_override(const std::string& arg) {
    Origin o;
    o.kind = Origin::Kind::Override;
    o.override = arg;
    const std::string where = o.describe();
    size_t eq = arg.find('=');
    std::string key = eq == std::string::npos ? "" : trim(arg.substr(0, eq));
    if (key.empty()) throw InputError(where + ": expected key=value");
    std::string raw = arg.substr(eq + 1);
    const KeyDef* def = registry_.find(key);
    YAML::Node node;
    std::string parse_error;
    try {
      node = YAML::Load(raw);
    } catch (const YAML::Exception& e) {
      parse_error = e.msg.empty() ? "unreadable" : e.msg;
    }
    // Text keys take the text verbatim when it does not read as a YAML scalar (a template
    // such as "[INST] {instruction} [/INST]" or "User: {instruction}").
    bool text_key = def && (def->type == KeyType::String || def->type == KeyType::Path);
    bool may_be_map = registry_.is_section(key);
    if (text_key &&
        (!parse_error.empty() || node.IsSequence() || (node.IsMap() && !may_be_map))) {
      node = YAML::Node(raw);
      parse_error.clear();
    }
    if (!parse_error.empty()) throw InputError(where + ": invalid YAML value: " + parse_error);
    std::vector<Assignment> out;
    add_pair(key, node, o, 0, out);
    return out;
  }

  // Applies one layer over what the lower layers left.
  // A key given twice in one layer (published llmforge configs do this) is taken once, with a
  // warning, when both give the same value, and refused naming both places when they differ.
  void apply_layer(const std::vector<Assignment>& given) {
    std::map<std::string, const Assignment*> seen;  // the first of each key, the one applied
    std::vector<const Assignment*> layer;
    for (const Assignment& a : given) {
      auto it = seen.find(a.key);
      if (it != seen.end()) {
        const KeyDef* def = registry_.find(a.key);
        const bool unused = def && !def->not_used.empty();  // its value does not matter
        if (unused) {  // said in its one "not used" warning
          config_.repeat_notes_[a.key] = " (it is set twice: again at line " + std::to_string(a.origin.line) + ")";
          continue;
        }
        if (YAML::Dump(a.node) != YAML::Dump(it->second->node))
          throw InputError(a.origin.describe() + ": key " + in_quotes(a.key) + " is set twice, to different values" +
                           first_at(*it->second));
        config_.warnings_.push_back(a.origin.describe() + ": key " + in_quotes(a.key) +
                                    " is set twice with the same value" + first_at(*it->second) +
                                    "; the repetition is ignored");
        continue;
      }
      seen[a.key] = &a;
      layer.push_back(&a);
    }
    // Map-or-string keys: one form per layer; this layer's form replaces the lower layers'
    // (the other form is unset, not put back to its default).
    // A parent set to null (`prompt_format:` with nothing after it) in the layer that also sets
    // some of its sub-keys is superseded by them, wherever it stands in the file.
    std::set<const Assignment*> superseded;
    for (const Assignment* given_a : layer) {
      const Assignment& a = *given_a;
      for (std::string p = parent_of(a.key); !p.empty() && !a.node.IsNull(); p = parent_of(p)) {
        if (!registry_.find(p)) continue;
        auto it = seen.find(p);
        if (it != seen.end() && it->second->node.IsNull()) superseded.insert(it->second);
        if (it != seen.end() && !it->second->node.IsNull()) {
          throw InputError(a.origin.describe() + ": key " + in_quotes(a.key) + ": " +
                           in_quotes(p) + " is already set to a name" + first_at(*it->second) +
                           "; use either a name or a map");
        }
        config_.values_.erase(p);
      }
      if (registry_.find(a.key) && registry_.is_section(a.key)) {
        for (const KeyDef& k : registry_.keys())
          if (k.name.rfind(a.key + ".", 0) == 0 && !seen.count(k.name))
            config_.values_.erase(k.name);
      }
    }
    for (const Assignment* a : layer)
      if (!superseded.count(a)) assign(*a);
  }

  // A map-or-string key left with neither form (its sub-keys were nulled) gets its default.
  void fill_empty_map_or_string() {
    for (const KeyDef& k : registry_.keys()) {
      if (!registry_.is_section(k.name) || config_.values_.count(k.name)) continue;
      bool any_child = false;
      for (const KeyDef& c : registry_.keys())
        if (c.name.rfind(k.name + ".", 0) == 0 && config_.values_.count(c.name)) any_child = true;
      if (!any_child) reset(k.name);
    }
  }

  // llmforge's model_id: a local directory is the weights when initial_base_model_ckpt_path is
  // unset; a Hub id without local weights is an error that says what to do.
  void model_id_as_weights(const std::string& source) {
    const std::string weights = "initial_base_model_ckpt_path", id = "model_id";
    if (!registry_.find(weights) || !registry_.find(id) || config_.values_.count(weights)) return;
    auto it = config_.values_.find(id);
    if (it == config_.values_.end())
      throw InputError(source + ": missing required key " + in_quotes(weights) +
                       ": Local Hugging Face model directory (config.json, *.safetensors, tokenizer files) to "
                       "fine-tune.");
    const std::string value = std::get<std::string>(it->second.value);
    const std::string base = it->second.origin.kind == Origin::Kind::File ? base_dir_ : "";
    const std::string dir = resolve_path(value, base);
    std::error_code ec;
    if (!value.empty() && fs::is_directory(dir, ec)) {
      config_.values_[weights] = Config::Entry{dir, it->second.origin, value};
      return;
    }
    throw InputError(it->second.origin.describe() + ": key " + in_quotes(id) + ": " + in_quotes(value) +
                     " is not a local directory and ringtune does not download models: download it (e.g. "
                     "`huggingface-cli download " + value + " --local-dir DIR`) and set " + weights +
                     ": DIR (model_id stays the name recorded in exported adapters)");
  }

  // Defaults another tool's key decides: llmforge's no_gradient_checkpoint sets
  // gradient_checkpointing's default to its negation, llmforge's padding (one sample per
  // sequence) sets packing's to false, axolotl's load_in_4bit: true or adapter: qlora sets
  // quantization's to nf4, and Hugging Face's optim sets optimizer's. So options read one key, and
  // the resolved config (dumped into checkpoints) states what runs and loads again without a
  // contradiction.
  void spelled_defaults() {
    auto set_default = [&](const std::string& key, ConfigValue value) {
      auto it = config_.values_.find(key);
      if (it == config_.values_.end() || it->second.origin.kind != Origin::Kind::Default) return;
      it->second.text = std::holds_alternative<bool>(value) ? (std::get<bool>(value) ? "true" : "false")
                                                            : std::get<std::string>(value);
      it->second.value = std::move(value);
    };
    auto given = [&](const std::string& key) {
      auto it = config_.values_.find(key);
      return it == config_.values_.end() ? nullptr : &it->second.value;
    };
    if (const auto* no = given("no_gradient_checkpoint")) set_default("gradient_checkpointing", !std::get<bool>(*no));
    if (given("padding")) set_default("packing", false);
    const auto* four_bit = given("load_in_4bit");
    const auto* adapter = given("adapter");
    if ((four_bit && std::get<bool>(*four_bit)) || (adapter && std::get<std::string>(*adapter) == "qlora"))
      set_default("quantization", std::string("nf4"));
    if (const auto* optim = given("optim")) set_default("optimizer", *optim);
  }

  // Every required key has a value.
  void check_required(const std::string& source) {
    for (const KeyDef& k : registry_.keys()) {
      if (!k.required || config_.values_.count(k.name)) continue;
      std::string help = k.help.substr(0, k.help.find(". ") == std::string::npos
                                              ? k.help.size()
                                              : k.help.find(". ") + 1);
      throw InputError(source + ": missing required key " + in_quotes(k.name) + ": " + help);
    }
  }

 private:
  static std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
  }

  static int line_of(const YAML::Node& node, int fallback) {
    int line = node.Mark().line;
    return line >= 0 ? line + 1 : fallback;
  }

  static std::string first_at(const Assignment& first) {
    if (first.origin.kind == Origin::Kind::File)
      return " (first at line " + std::to_string(first.origin.line) + ")";
    return " (first in " + first.origin.describe() + ")";
  }

  // "cfg.yaml:7" with the value's line, or the override.
  static std::string where_value(const Assignment& a, int line) {
    if (a.origin.kind != Origin::Kind::File) return a.origin.describe();
    return a.origin.file + ":" + std::to_string(line);
  }

  void flatten_map(const YAML::Node& map, const std::string& prefix, const Origin& origin,
                   std::vector<Assignment>& out) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies: `it->first` lives in a proxy that dies with the expression.
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      int key_line = line_of(k, 0);
      if (!k.IsScalar()) {
        Origin o = origin;
        o.line = key_line;
        throw InputError(o.describe() + ": expected a key name, got a " +
                         (k.IsMap() ? "map" : k.IsSequence() ? "list" : "null"));
      }
      std::string name = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
      Origin o = origin;
      o.line = key_line;
      add_pair(name, v, o, line_of(v, key_line), out);
    }
  }

  // Every string in a value is UTF-8 (paths, names and templates end up in JSON and file names),
  // and the value is bounded: an alias that contains itself (`&a [*a]`) would recurse for ever, and
  // nested aliases (`&b [*a, *a, ...]` nine levels deep) expand to billions of nodes; both are
  // refused here, before anything else walks the value.
  static void check_value(const YAML::Node& node, const std::string& name, const Origin& origin) {
    size_t budget = 1'000'000;
    check_value(node, name, origin, 0, budget);
  }
  static void check_value(const YAML::Node& node, const std::string& name, const Origin& origin, int depth,
                         size_t& budget) {
    constexpr int kMaxDepth = 64;
    if (depth > kMaxDepth || budget-- == 0) {
      Origin o = origin;
      if (o.kind == Origin::Kind::File) o.line = line_of(node, origin.line);
      throw InputError(o.describe() + ": key " + in_quotes(name) + ": the value is " +
                       (depth > kMaxDepth ? "nested more than " + std::to_string(kMaxDepth) + " levels deep"
                                          : std::string("more than a million items")) +
                       " (an alias that contains itself, or aliases that multiply?)");
    }
    if (node.IsScalar()) {
      const std::string& s = node.Scalar();
      const size_t bad = utf8::first_invalid(s);
      if (bad < s.size()) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(s[bad])));
        Origin o = origin;
        if (o.kind == Origin::Kind::File) o.line = line_of(node, origin.line);
        throw InputError(o.describe() + ": key " + in_quotes(name) + ": the value is not valid UTF-8 (byte " + hex +
                         " at offset " + std::to_string(bad) + ")");
      }
    } else if (node.IsMap() || node.IsSequence()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (node.IsMap()) {
          check_value(it->first, name, origin, depth + 1, budget);
          check_value(it->second, name, origin, depth + 1, budget);
        } else {
          check_value(*it, name, origin, depth + 1, budget);
        }
      }
    }
  }

  // One `name: node` pair: a key, a section to descend into, or an unknown key.
  void add_pair(const std::string& name, const YAML::Node& node, const Origin& origin,
                int value_line, std::vector<Assignment>& out) {
    if (!node.IsMap()) check_value(node, name, origin);
    const KeyDef* def = registry_.find(name);
    bool section = registry_.is_section(name);
    if (node.IsNull()) value_line = origin.line;  // yaml-cpp marks a missing value oddly
    if (section && node.IsMap()) {
      flatten_map(node, name, origin, out);
      return;
    }
    if (def) {  // a Map key takes its whole map as one value
      if (node.IsMap()) check_value(node, name, origin);
      out.push_back(Assignment{name, node, origin, value_line});
      return;
    }
    if (section && node.IsNull()) return;  // `lora_config:` with everything commented out
    if (section) {
      Assignment a{name, node, origin, value_line};
      throw InputError(where_value(a, origin.line) + ": key " + in_quotes(name) +
                       ": expected a map, got " + describe_node(node));
    }
    std::vector<std::string> candidates;
    for (const KeyDef& k : registry_.keys()) candidates.push_back(k.name);
    for (const std::string& s : registry_.sections())
      if (!registry_.find(s)) candidates.push_back(s);
    throw InputError(origin.describe() + ": unknown key " + in_quotes(name) +
                     did_you_mean(closest(name, candidates)));
  }

  static std::string describe_node(const YAML::Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    if (node.IsNull()) return "null";
    return in_quotes(node.Scalar());
  }

  void reset(const std::string& key) {
    config_.values_.erase(key);
    const KeyDef& k = registry_.at(key);
    if (k.default_value) {
      Origin o;
      o.file = config_.source_name_;
      ConfigValue v = resolved_default(k);
      config_.values_[key] = Config::Entry{v, o, format_value(v)};
    }
  }

  [[noreturn]] void type_error(const Assignment& a, const KeyDef& k, const YAML::Node& node,
                               int line) {
    throw InputError(where_value(a, line) + ": key " + in_quotes(k.name) + ": expected " +
                     key_type_name(k.type) + ", got " + describe_node(node));
  }

  // The allowed value `value` names, matched without regard to case ("Cosine", "True"), or an
  // InputError listing the allowed values.
  std::string check_choice(const Assignment& a, const KeyDef& k, const std::string& value,
                           int line) {
    if (k.choices.empty()) return value;
    for (const std::string& c : k.choices)
      if (lower(c) == lower(value)) return c;
    throw InputError(where_value(a, line) + ": key " + in_quotes(k.name) + ": " +
                     in_quotes(value) + " is not one of " + join(k.choices, ", ") +
                     did_you_mean(closest(value, k.choices)));
  }

  void assign(const Assignment& a) {
    const KeyDef& k = registry_.at(a.key);
    const YAML::Node& node = a.node;
    if (node.IsNull()) {
      reset(a.key);
      return;
    }
    if (k.type == KeyType::Any) {
      const std::string json = yaml_to_json(node).dump();
      config_.values_[a.key] = Config::Entry{json, a.origin, json};
      return;
    }
    if (k.type == KeyType::Map) {
      if (!node.IsMap()) type_error(a, k, node, a.origin.line);
      const std::string json = yaml_to_json(node).dump();
      config_.values_[a.key] = Config::Entry{json, a.origin, json};
      return;
    }
    if (node.IsMap()) type_error(a, k, node, a.origin.line);
    ConfigValue value;
    std::string text;
    if (node.IsSequence()) {
      if (k.type != KeyType::StringList) type_error(a, k, node, a.origin.line);
      std::vector<std::string> items;
      for (size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        int line = line_of(item, a.value_line);
        if (!item.IsScalar()) {
          throw InputError(where_value(a, line) + ": key " + in_quotes(k.name) +
                           ": expected list of strings, element " + std::to_string(i + 1) +
                           " is " + describe_node(item));
        }
        items.push_back(check_choice(a, k, item.Scalar(), line));
      }
      text = "[" + join(items, ", ") + "]";
      value = std::move(items);
    } else {
      const std::string& s = node.Scalar();
      const int line = a.origin.line;
      text = s;
      switch (k.type) {
        case KeyType::Bool: {
          auto v = parse_bool(s);
          if (!v) type_error(a, k, node, line);
          value = *v;
          break;
        }
        case KeyType::Int: {
          auto v = parse_int(s);
          if (!v) type_error(a, k, node, line);
          value = *v;
          break;
        }
        case KeyType::Float: {
          auto v = parse_double(s);
          if (!v) type_error(a, k, node, line);
          value = *v;
          break;
        }
        case KeyType::String:
          value = check_choice(a, k, s, line);
          break;
        case KeyType::StringList:
          value = std::vector<std::string>{check_choice(a, k, s, line)};
          break;
        case KeyType::Map:
        case KeyType::Any:
          type_error(a, k, node, line);
        case KeyType::Path: {
          if (s.empty()) {
            throw InputError(where_value(a, line) + ": key " + in_quotes(k.name) +
                             ": expected path, got an empty string");
          }
          const size_t scheme = s.find("://");  // s3://, gs://, https://: llmforge configs name remote data
          if (scheme != std::string::npos && scheme > 0 &&
              std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(scheme),
                          [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '+' || ch == '.' || ch == '-'; }))
            throw InputError(where_value(a, line) + ": key " + in_quotes(k.name) + ": " + s +
                             " is a URL; ringtune reads local files: download it first (aws s3 cp, gsutil cp, "
                             "huggingface-cli download) and give its local path");
          std::string base = a.origin.kind == Origin::Kind::File ? base_dir_ : "";
          value = resolve_path(s, base);
          for (const std::string& c : k.choices)  // keywords such as resume: auto
            if (lower(c) == lower(s)) value = c;
          break;
        }
      }
    }
    config_.values_[a.key] = Config::Entry{std::move(value), a.origin, text};
  }

  Config& config_;
  const Registry& registry_;
  std::string base_dir_;  // directory that relative paths in the file are relative to
};

namespace {

// yaml-cpp 0.7's LoadAll never returns on a document that starts with a token it cannot start a
// node with (a stray ','): the parser reports an empty document without consuming the token, again
// and again, while memory grows. The documents' starts are checked first with an event handler
// that builds nothing: a document starting where the one before started is that case.
struct DocumentStarts : YAML::EventHandler {
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

void check_documents_advance(const std::string& yaml_text) {
  std::istringstream in(yaml_text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  while (parser.HandleNextDocument(starts)) {
    const size_t n = starts.starts.size();
    if (n >= 2 && starts.starts[n - 1].pos == starts.starts[n - 2].pos) {
      const YAML::Mark& m = starts.starts.back();
      const char c = m.pos >= 0 && static_cast<size_t>(m.pos) < yaml_text.size() ? yaml_text[m.pos] : '?';
      throw YAML::ParserException(m, std::string("unexpected \"") + c + "\"");
    }
  }
}

}  // namespace

// Builds a Config: defaults, then the file's document, then each override in turn.
Config ConfigLoader::load(const std::string& yaml_text, const std::vector<std::string>& overrides,
                          const std::string& source_name, const std::string& base_dir) {
  std::vector<YAML::Node> docs;
  try {
    check_documents_advance(yaml_text);
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::DeepRecursion& e) {  // yaml-cpp's own message for it is "bad file"
    throw InputError(source_name + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: nested more than " +
                     std::to_string(e.depth() - 1) + " levels deep");
  } catch (const YAML::ParserException& e) {
    throw InputError(source_name + ":" + std::to_string(e.mark.line + 1) +
                     ": invalid YAML: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw InputError(source_name + ": invalid YAML: " + e.msg);
  }
  if (docs.size() > 1) {
    throw InputError(source_name + ": holds " + std::to_string(docs.size()) +
                     " YAML documents (separated by ---); expected one");
  }
  Config config(default_registry());
  config.source_name_ = source_name;
  for (auto& [key, e] : config.values_) e.origin.file = source_name;
  ConfigLoader loader(config, base_dir);
  if (!docs.empty()) loader.apply_layer(loader.flatten_file(docs[0], source_name));
  for (const std::string& arg : overrides) loader.apply_layer(loader.flatten_override(arg));
  loader.fill_empty_map_or_string();
  loader.model_id_as_weights(source_name);
  loader.spelled_defaults();
  loader.check_required(source_name);
  validate_config(config);
  // One line per key of another tool that is set and not acted on.
  for (const KeyDef& k : config.registry().keys())
    if (!k.not_used.empty() && config.is_explicit(k.name))
      config.warnings_.push_back(config.origin(k.name).describe() + ": key " + in_quotes(k.name) +
                                 " is accepted and not used: " + k.not_used +
                                 (config.repeat_notes_.count(k.name) ? config.repeat_notes_.at(k.name) : ""));
  return config;
}

Config load_config_from_string(const std::string& yaml_text,
                               const std::vector<std::string>& overrides,
                               const std::string& source_name, const std::string& base_dir) {
  return ConfigLoader::load(yaml_text, overrides, source_name, base_dir);
}

Config load_config(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  // A pipe (`train <(envsubst < cfg.yaml)`, /dev/stdin) is read like a file, up to a bound that
  // also ends /dev/zero; a socket or block device is not a config.
  std::error_code ec;
  const auto kind = fs::status(yaml_path, ec).type();
  if (ec && kind != fs::file_type::not_found) throw InputError(yaml_path + ": " + ec.message());
  if (kind == fs::file_type::directory) throw InputError(yaml_path + ": is a directory, expected a YAML config file");
  if (kind != fs::file_type::regular && kind != fs::file_type::fifo && kind != fs::file_type::character &&
      kind != fs::file_type::not_found)
    throw InputError(yaml_path + ": not a regular file (" + std::string(file_kind(kind)) + "), expected a YAML config file");
  // A shell's pipe (<(...), /dev/stdin) belongs to the process it was made for: under mpirun the
  // other ranks get nothing, and are told so.
  const bool piped = kind == fs::file_type::fifo || kind == fs::file_type::character || yaml_path.rfind("/dev/", 0) == 0 ||
                     yaml_path.rfind("/proc/", 0) == 0;
  const std::string pipe_hint = piped ? "; a config through a pipe reaches one process only: under mpirun, give a file" : "";
  std::ifstream in(yaml_path, std::ios::binary);
  if (!in) {
    throw InputError(yaml_path + ": cannot read config file (" + std::strerror(errno) + ")" + pipe_hint);
  }
  constexpr size_t kMostConfigBytes = size_t{16} << 20;
  std::string text;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > kMostConfigBytes) throw InputError(yaml_path + ": more than 16 MiB; expected a YAML config file");
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw InputError(yaml_path + ": the config is empty" + pipe_hint);
  // A pipe's relative paths resolve against the working directory (its own is /dev/fd or /proc).
  const std::string dir = kind == fs::file_type::regular ? fs::path(yaml_path).parent_path().string() : "";
  return load_config_from_string(text, overrides, yaml_path, dir);
}

// ---------------------------------------------------------------------------------------------
// Dump and help

namespace {

// A nested map in declaration order, built from dotted names.
struct DumpNode {
  std::string name;                   // last component
  const ConfigValue* value = nullptr;  // a leaf
  std::vector<DumpNode> children;     // a map
  bool open_map = false;              // value is a Map key's JSON text
  DumpNode& child(const std::string& n) {
    for (DumpNode& c : children)
      if (c.name == n) return c;
    children.push_back(DumpNode{n, nullptr, {}, false});
    return children.back();
  }
};

void emit_value(YAML::Emitter& out, const ConfigValue& v) {
  switch (v.index()) {
    case 0: out << (std::get<bool>(v) ? "true" : "false"); break;
    case 1: out << std::to_string(std::get<int64_t>(v)); break;
    case 2: out << format_double(std::get<double>(v)); break;
    case 3: out << YAML::DoubleQuoted << std::get<std::string>(v); break;
    default:
      out << YAML::Flow << YAML::BeginSeq;
      for (const std::string& item : std::get<std::vector<std::string>>(v))
        out << YAML::DoubleQuoted << item;
      out << YAML::EndSeq;
  }
}

void emit_node(YAML::Emitter& out, const DumpNode& node) {
  out << YAML::Key << node.name << YAML::Value;
  if (node.value && node.open_map) {
    out << YAML::Load(std::get<std::string>(*node.value));  // JSON is YAML: the map itself
    return;
  }
  if (node.value) {
    emit_value(out, *node.value);
    return;
  }
  out << YAML::BeginMap;
  for (const DumpNode& c : node.children) emit_node(out, c);
  out << YAML::EndMap;
}

// Splits help text into lines of at most `width` characters.
std::vector<std::string> wrap(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::istringstream words(text);
  std::string word, line;
  while (words >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

std::string Config::dump_yaml() const {
  DumpNode root;
  for (const KeyDef& k : registry_->keys()) {
    auto it = values_.find(k.name);
    if (it == values_.end()) continue;
    if (!k.active_if.empty() && !values_.count(k.active_if)) continue;
    DumpNode* node = &root;
    size_t start = 0;
    for (size_t dot; (dot = k.name.find('.', start)) != std::string::npos; start = dot + 1) {
      node = &node->child(k.name.substr(start, dot - start));
      if (node->value)
        throw Error("config: " + in_quotes(k.name) + " is set together with its parent (a bug)");
    }
    node = &node->child(k.name.substr(start));
    if (!node->children.empty())
      throw Error("config: " + in_quotes(k.name) + " is set together with its sub-keys (a bug)");
    node->value = &it->second.value;
    node->open_map = k.type == KeyType::Map || k.type == KeyType::Any;
  }
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const DumpNode& c : root.children) emit_node(out, c);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string registry_help(const std::string& group, const Registry& registry) {
  std::vector<std::string> groups = registry.groups();
  if (!group.empty() && std::find(groups.begin(), groups.end(), group) == groups.end()) {
    throw InputError("unknown config group " + in_quotes(group) + " (groups: " +
                     join(groups, ", ") + ")");
  }
  std::string out;
  for (const std::string& g : groups) {
    if (!group.empty() && g != group) continue;
    if (!out.empty()) out += "\n";
    out += g + ":\n";
    for (const KeyDef& k : registry.keys()) {
      if (k.group != g) continue;
      std::string type = key_type_name(k.type);
      if (registry.is_section(k.name)) type = "string or map";  // map-or-string
      if (!k.choices.empty()) {
        if (k.type == KeyType::String) type = join(k.choices, "|");
        if (k.type == KeyType::Path) type = join(k.choices, "|") + "|path";
        if (k.type == KeyType::StringList) type = "list of " + join(k.choices, "|");
      }
      std::string value = k.required        ? "required"
                          : k.default_value ? "default: " + format_value(*k.default_value)
                                            : "unset";
      if (k.default_value && k.type != KeyType::Bool && k.type != KeyType::Int &&
          k.type != KeyType::Float && format_value(*k.default_value).empty())
        value = "default: \"\"";
      if (k.max_value) value += ", at most " + format_bound(*k.max_value);
      out += "  " + k.name + "  (" + type + ", " + value + ")\n";
      for (const std::string& line : wrap(k.help, 88)) out += "      " + line + "\n";
    }
  }
  return out;
}

}  // namespace ringtune
