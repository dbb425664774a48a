// DataSpec -> tokenizer, prompt format and data options; fingerprints for the prepared-data cache.
#include "src/data/data_pipeline.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/data/chat_template.h"
#include "src/error.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// Bumped whenever tokenization, rendering or masking code changes its output.
constexpr int kDataCodeVersion = 3;  // 2: chat templates, the fidelity gate; 3: OpenAI weight, tool calls refused

struct Fnv64 {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) {
    add(s.data(), s.size());
    const char sep = '\x1f';
    add(&sep, 1);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

std::vector<std::string> tokenizer_files_of(const std::string& path) {
  if (!fs::is_directory(path)) return {path};
  std::vector<std::string> out;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    const fs::path p = fs::path(path) / name;
    if (fs::exists(p)) out.push_back(p.string());
  }
  return out;
}

}  // namespace

std::string file_fingerprint(const std::vector<std::string>& paths) {
  Fnv64 h;
  std::vector<char> buf(size_t{1} << 20);
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw InputError(p + ": cannot open for reading");
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h.add(buf.data(), static_cast<size_t>(in.gcount()));
    }
    h.add(std::string("\x1e"));
  }
  return h.hex();
}

std::string text_fingerprint(const std::string& text) {
  Fnv64 h;
  h.add(text);
  return h.hex();
}

std::string DataPipeline::tokenizer_hash() const { return file_fingerprint(tokenizer_files); }

std::string DataPipeline::format_hash() const {
  Fnv64 h;
  h.add(std::to_string(kDataCodeVersion));
  h.add(renderer ? renderer->fingerprint() : std::string());
  h.add(dataset_format_name(options.dataset_format));
  h.add(options.conversation_column);
  h.add(dataset_format_name(options.conversation_style));
  if (!(options.alpaca_columns == AlpacaColumns{}))
    h.add("alpaca:" + options.alpaca_columns.instruction + "\x1f" + options.alpaca_columns.input + "\x1f" +
          options.alpaca_columns.output + "\x1f" + options.alpaca_columns.system);
  h.add(task_name(options.task));
  h.add(train_on_name(options.train_on));
  h.add(truncation_name(options.truncation));
  h.add(on_invalid_sample_name(options.on_invalid_sample));
  h.add(std::to_string(options.context_length));
  h.add(options.allow_special_tokens_in_content ? "1" : "0");
  if (!options.response_template.empty()) {
    std::string ids = "response_template";
    for (const int32_t id : options.response_template) ids += "," + std::to_string(id);
    h.add(ids);
  }
  return h.hex();
}

namespace {

// The special tokens of the template's tokenizer_config.json (or the tokenizer's) plus
// chat_template_kwargs.
jinja::Dict template_variables(const std::string& dir, const Tokenizer& tokenizer, const std::string& kwargs_json) {
  jinja::Dict vars = chat_template_special_tokens(dir, tokenizer);
  if (kwargs_json.empty()) return vars;
  const std::function<jinja::Value(const nlohmann::ordered_json&)> convert = [&](const nlohmann::ordered_json& j) {
    if (j.is_null()) return jinja::Value::none();
    if (j.is_boolean()) return jinja::Value(j.get<bool>());
    if (j.is_number_integer()) return jinja::Value(j.get<int64_t>());
    if (j.is_number_float()) return jinja::Value(j.get<double>());
    if (j.is_string()) return jinja::Value(j.get<std::string>());
    if (j.is_array()) {
      jinja::List l;
      for (const auto& x : j) l.push_back(convert(x));
      return jinja::Value(std::move(l));
    }
    jinja::Dict d;
    for (const auto& [k, v] : j.items()) d.emplace_back(k, convert(v));
    return jinja::Value(std::move(d));
  };
  const nlohmann::ordered_json kwargs = nlohmann::ordered_json::parse(kwargs_json);
  for (const auto& [k, v] : kwargs.items()) {
    vars.erase(std::remove_if(vars.begin(), vars.end(), [&key = k](const auto& kv) { return kv.first == key; }), vars.end());
    vars.emplace_back(k, convert(v));
  }
  return vars;
}

}  // namespace

DataPipeline make_data_pipeline(const DataSpec& spec) {
  DataPipeline p;
  p.model_dir = spec.model_dir;
  p.tokenizer_path = spec.tokenizer_path;
  if (!fs::exists(p.tokenizer_path))
    throw InputError(spec.tokenizer_where + " " + p.tokenizer_path + " does not exist");
  try {
    p.tokenizer = load_tokenizer(p.tokenizer_path);
  } catch (const InputError& e) {
    throw InputError(spec.tokenizer_where + ": " + e.what());
  }
  p.tokenizer_files = tokenizer_files_of(p.tokenizer_path);
  DataOptions options = spec.options;
  if (!options.response_template_text.empty() || !spec.response_template_ids.empty())
    options.response_template = response_template_ids(*p.tokenizer, options.response_template_text,
                                                      spec.response_template_ids, spec.response_template_where);

  const std::string where_to_look = p.model_dir.empty() ? p.tokenizer_path : p.model_dir;
  if (spec.prompt_format == "custom") {
    p.format = spec.custom_format;
    p.prompt_format_name = "custom";
    p.renderer = std::make_shared<PromptRenderer>(p.format, spec.format_where, "custom");
    p.options = options;
    return p;
  }
  std::optional<ChatTemplateSource> tmpl;
  if (!spec.chat_template.empty()) {
    tmpl = ChatTemplateSource{spec.chat_template, spec.chat_template_where};
  } else if (spec.prompt_format == "auto") {
    try {
      tmpl = read_chat_template(where_to_look);
    } catch (const InputError& e) {
      throw InputError(spec.format_where + ": " + e.what());
    }
  }
  if (tmpl) {  // the model's own template, rendered as transformers renders it
    p.prompt_format_name = "chat_template";
    p.renderer = std::make_shared<ChatTemplateRenderer>(*tmpl, template_variables(where_to_look, *p.tokenizer, spec.chat_template_kwargs),
                                                        *p.tokenizer);
    p.options = options;
    return p;
  }
  // No chat template. Plain-text training (task causal_lm) renders no conversation: `auto` is
  // then no format when the vocabulary names none.
  std::string name = spec.prompt_format, label = spec.prompt_format;
  try {
    if (name == "auto") {
      try {
        name = preset_from_vocabulary(where_to_look, p.tokenizer.get());
        label = name + " (auto: " + where_to_look + " has no chat template; its vocabulary has the " + name +
                " tokens)";
      } catch (const InputError&) {
        // llmforge: model_id names the family, e.g. a Llama 2 base model (no chat tokens) -> llama2.
        const std::string family = preset_from_model_id(spec.model_id);
        if (!family.empty() && spec.options.task != Task::causal_lm) {
          name = family;
          label = name + " (auto: " + where_to_look + " has no chat template; model_id " + spec.model_id +
                  " is of the " + name + " family)";
        } else {
          if (spec.options.task != Task::causal_lm) throw;
          name = label = "none";
        }
      }
    }
    p.prompt_format_name = name;
    p.format = prompt_format_preset(name);
  } catch (const InputError& e) {
    throw InputError(spec.format_where + ": " + e.what());
  }
  p.renderer = std::make_shared<PromptRenderer>(p.format, spec.format_where, label);
  p.options = options;
  return p;
}

std::shared_ptr<const ChatRenderer> resolve_renderer(const std::string& name, const std::string& model_dir,
                                                     const Tokenizer& tokenizer) {
  if (name != "auto")
    return std::make_shared<PromptRenderer>(prompt_format_preset(name), "generation_config.prompt_format", name);
  if (auto tmpl = read_chat_template(model_dir))
    return std::make_shared<ChatTemplateRenderer>(*tmpl, template_variables(model_dir, tokenizer, ""), tokenizer);
  const std::string preset = preset_from_vocabulary(model_dir, &tokenizer);
  return std::make_shared<PromptRenderer>(prompt_format_preset(preset), "generation_config.prompt_format",
                                          preset + " (auto: " + model_dir + " has no chat template; its vocabulary has the " +
                                              preset + " tokens)");
}

}  // namespace ringtune
