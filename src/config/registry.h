// The configuration registry: every config key declared once (type, default, help, group,
// allowed values), the loader that turns a YAML file plus `key=value` overrides into a checked
// Config, typed getters, the YAML dump (`--dump-config`) and the help text (`--help`).
// defines: KeyType, KeyDef, Registry, format_bound, default_registry, Origin, Config, load_config,
//          load_config_from_string, validate_config, registry_help
//
// Keys are dotted names: nested YAML maps flatten to dotted keys, so
//   lora_config:
//     r: 8
// sets `lora_config.r` (writing `lora_config.r: 8` at the top level means the same).
//
// Precedence, lowest to highest:
//   1. defaults declared in the registry (src/config/keys.cpp)
//   2. the YAML config file
//   3. command-line overrides `key=value`, applied left to right (a later one wins)
// A null value (`key:` / `key: null` in the file, `key=` / `key=null` on the command line) puts
// the key back to its default (unset when it has none).
//
// Relative paths in path-typed keys resolve against the directory of the YAML file they were
// written in (the working directory for a config read from a pipe); paths from the command line
// and from defaults resolve against the working directory. A leading `~/` is the home directory. After loading, every path key holds an
// absolute path (or one of the key's keywords, e.g. `resume: auto`).
//
// A key may be both a scalar and a map ("map-or-string"): `generation_config.prompt_format` is a
// preset name (a string key) or a map of templates (its sub-keys `generation_config.prompt_format.
// system`, `.user`, ...). Each config layer uses one form: a layer that sets the preset drops the
// sub-keys set by lower layers, and a layer that sets sub-keys drops a lower layer's preset
// (even its default). After loading, exactly one form is set: is_set(the preset key) is false
// exactly when the map form is used.
//
// Errors in user input throw ringtune::InputError naming the file and line (or the override);
// asking for an undeclared key, or with the wrong type, throws ringtune::Error (a bug).
// This header includes neither yaml-cpp nor libtorch.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Declarations

enum class KeyType {
  Bool,
  Int,         // int64
  Float,       // double; an int literal is accepted
  String,
  StringList,  // YAML sequence of scalars; a single scalar is a list of one
  Path,        // a string resolved against the file's directory; see KeyDef::choices
  Map,         // an open map of YAML values (any sub-keys), held as its JSON text; get_string
  Any,         // any YAML value (scalar, list or map), held as its JSON text; get_string
};

// "bool", "int", "float", "string", "list of strings", "path".
const char* key_type_name(KeyType type);

using ConfigValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;

struct KeyDef {
  std::string name;   // dotted, e.g. "lora_config.r"
  KeyType type = KeyType::String;
  std::string group;  // "model", "data", "training", ...; orders and filters the help
  std::string help;   // first sentence is used in "missing required key" errors
  std::optional<ConfigValue> default_value;  // nullopt: unset unless given (or required)
  bool required = false;
  // String: the allowed values (matched ignoring case, stored as declared). StringList: the
  // allowed values of each element.
  // Path: keywords kept verbatim (e.g. "auto", "none" for resume); anything else is a path.
  std::vector<std::string> choices;
  // When non-empty, this key only matters while key `active_if` is set (lora_config.* needs
  // lora_config.r). It is left out of dump_yaml() while inactive, and setting it explicitly
  // while inactive is a validation error.
  std::string active_if;
  // Non-empty for a key of another tool (llmforge, axolotl) that ringtune accepts without acting on
  // it: what ringtune does instead and why. Setting it gives one warning (Config::warnings()).
  std::string not_used;
  // Int and Float keys: the largest value accepted (validate_config refuses more, naming the key).
  // Bounds keep later arithmetic (plans, memory estimates, allocations) from overflowing or running
  // for ever on a mistyped number; each is far above any real run.
  std::optional<double> max_value;

  // Chained setters used by keys.cpp. def() checks that the default fits the key's type.
  KeyDef& def_value(ConfigValue value);
  KeyDef& def(bool value) { return def_value(value); }
  KeyDef& def(int value) { return def_value(int64_t(value)); }
  KeyDef& def(double value) { return def_value(value); }
  KeyDef& def(const char* value) { return def_value(std::string(value)); }
  KeyDef& def(std::vector<std::string> value) { return def_value(std::move(value)); }
  KeyDef& require();
  KeyDef& one_of(std::vector<std::string> values);
  KeyDef& only_if_set(std::string key);
  KeyDef& accepted_not_used(std::string why);
  KeyDef& at_most(double value);
};

class Registry {
 public:
  // Declares a key; a second declaration of the same name, or a name that is both a key and
  // the inside of a non-string key, is an Error.
  KeyDef& declare(const std::string& name, KeyType type, const std::string& group,
                  const std::string& help);
  const KeyDef* find(const std::string& name) const;  // nullptr when undeclared
  const KeyDef& at(const std::string& name) const;    // Error when undeclared (a bug)
  const std::vector<KeyDef>& keys() const { return keys_; }  // declaration order
  // True when some declared key starts with `name + "."` (a section such as "lora_config",
  // or a map-or-string key such as "generation_config.prompt_format").
  bool is_section(const std::string& name) const;
  std::vector<std::string> sections() const;  // declaration order
  std::vector<std::string> groups() const;    // declaration order

 private:
  std::vector<KeyDef> keys_;
  std::map<std::string, size_t> index_;
};

// A key's bound as help and errors print it: whole numbers in digits (1048576), others as %g.
std::string format_bound(double value);

// Every key of ringtune, declared in src/config/keys.cpp.
const Registry& default_registry();
void declare_keys(Registry& registry);

// ---------------------------------------------------------------------------------------------
// Resolved configuration

// Where a value came from.
struct Origin {
  enum class Kind { Default, File, Override };
  Kind kind = Kind::Default;
  std::string file;      // File: the config path as given; Default: the config's source name
  int line = 0;          // File: 1-based line of the key
  std::string override;  // Override: the whole "key=value" argument
  // "cfg.yaml:12", "command line: override \"x=y\"", or "cfg.yaml" for a default.
  std::string describe() const;
};

class Config {
 public:
  explicit Config(const Registry& registry = default_registry());

  bool get_bool(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  std::string get_string(const std::string& key) const;  // String and Path keys
  std::vector<std::string> get_strings(const std::string& key) const;
  // True when the key has a value (a default or a given one). Getting an unset key is an Error.
  bool is_set(const std::string& key) const;
  // True when the value came from the file or the command line rather than the default.
  bool is_explicit(const std::string& key) const;
  const Origin& origin(const std::string& key) const;
  // The value as the user wrote it (for messages), or its canonical text for defaults.
  std::string text(const std::string& key) const;

  // The resolved configuration as YAML with nested maps, in declaration order; loading it
  // again gives the same values. Unset keys and inactive keys (see KeyDef::active_if) are
  // left out.
  std::string dump_yaml() const;

  const Registry& registry() const { return *registry_; }
  const std::string& source_name() const { return source_name_; }
  // What loading accepted but the user should hear about, one line each ("cfg.yaml:9: key
  // \"seed\" is set twice with the same value (first at line 4); ..."). The command logs them.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  friend class ConfigLoader;
  struct Entry {
    ConfigValue value;
    Origin origin;
    std::string text;
  };
  const Entry* entry(const std::string& key, KeyType want1, KeyType want2) const;

  const Registry* registry_;
  std::string source_name_;
  std::map<std::string, Entry> values_;
  std::vector<std::string> warnings_;
  std::map<std::string, std::string> repeat_notes_;  // a not-used key set twice in one layer
};

// Loads `yaml_path`, applies `overrides` ("key=value", value parsed as a YAML scalar or flow
// sequence/map, e.g. `lora_config.target_modules=[q_proj,v_proj]`), checks every key against
// the registry, then runs validate_config. Throws InputError on any problem.
Config load_config(const std::string& yaml_path, const std::vector<std::string>& overrides = {});

// Same from YAML text. `source_name` stands for the file in messages; relative paths resolve
// against `base_dir` (the working directory when empty).
Config load_config_from_string(const std::string& yaml_text,
                               const std::vector<std::string>& overrides = {},
                               const std::string& source_name = "<config>",
                               const std::string& base_dir = "");

// Cross-key checks (learning_rate > 0, 0 <= lora_dropout < 1, ...). Throws InputError naming
// the key, its value and where it was set. load_config calls it.
void validate_config(const Config& config);

// Help for every key, grouped by group in declaration order; `group` non-empty keeps one group
// (an unknown group is an InputError listing the groups).
std::string registry_help(const std::string& group = "",
                          const Registry& registry = default_registry());

}  // namespace ringtune
