// Config -> tokenizer, prompt format and data options; fingerprints for the prepared-data cache.
#include "src/data/data_pipeline.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/config/registry.h"
#include "src/error.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// Bumped whenever tokenization, rendering or masking code changes its output.
constexpr int kDataCodeVersion = 1;

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
  for (const std::string* s : {&format.system, &format.user, &format.assistant,
                               &format.trailing_assistant, &format.bos, &format.default_system_message})
    h.add(*s);
  h.add(format.system_in_user ? "1" : "0");
  h.add(format.strip_whitespace ? "1" : "0");
  h.add(dataset_format_name(options.dataset_format));
  h.add(task_name(options.task));
  h.add(train_on_name(options.train_on));
  h.add(truncation_name(options.truncation));
  h.add(on_invalid_sample_name(options.on_invalid_sample));
  h.add(std::to_string(options.context_length));
  h.add(options.allow_special_tokens_in_content ? "1" : "0");
  return h.hex();
}

DataPipeline make_data_pipeline(const Config& c) {
  DataPipeline p;
  p.model_dir = c.is_set("initial_base_model_ckpt_path") ? c.get_string("initial_base_model_ckpt_path") : "";
  const std::string tok_key = c.is_set("tokenizer_path") ? "tokenizer_path" : "initial_base_model_ckpt_path";
  if (!c.is_set(tok_key))
    throw InputError(c.source_name() + ": set tokenizer_path or initial_base_model_ckpt_path");
  p.tokenizer_path = c.get_string(tok_key);
  if (!fs::exists(p.tokenizer_path))
    throw InputError(c.origin(tok_key).describe() + ": " + tok_key + " " + p.tokenizer_path +
                     " does not exist");
  try {
    p.tokenizer = load_tokenizer(p.tokenizer_path);
  } catch (const InputError& e) {
    throw InputError(c.origin(tok_key).describe() + ": " + tok_key + ": " + e.what());
  }
  p.tokenizer_files = tokenizer_files_of(p.tokenizer_path);

  const std::string pf = "generation_config.prompt_format";
  const std::string where = c.origin(pf).describe() + ": " + pf;
  if (c.is_set(pf + ".user") || c.is_set(pf + ".system") || c.is_set(pf + ".assistant")) {
    auto str = [&](const std::string& k) { return c.is_set(pf + "." + k) ? c.get_string(pf + "." + k) : ""; };
    p.format.system = str("system");
    p.format.user = str("user");
    p.format.assistant = str("assistant");
    p.format.trailing_assistant = str("trailing_assistant");
    p.format.bos = str("bos");
    p.format.default_system_message = str("default_system_message");
    p.format.system_in_user = c.is_set(pf + ".system_in_user") && c.get_bool(pf + ".system_in_user");
    p.format.strip_whitespace = !c.is_set(pf + ".strip_whitespace") || c.get_bool(pf + ".strip_whitespace");
    validate_prompt_format(p.format, c.origin(pf + ".user").describe() + ": " + pf);
    p.prompt_format_name = "custom";
  } else {
    std::string name = c.get_string(pf);
    // Plain-text training (task causal_lm) renders no conversation: a model without a chat
    // template is then fine, and `auto` means no format.
    if (name == "auto" && c.get_string("task") == "causal_lm") {
      try {
        detect_prompt_format_preset(p.model_dir.empty() ? p.tokenizer_path : p.model_dir, p.tokenizer.get());
      } catch (const InputError&) {
        name = "none";
      }
    }
    try {
      p.prompt_format_name = name == "auto" ? detect_prompt_format_preset(p.model_dir.empty() ? p.tokenizer_path : p.model_dir,
                                                                          p.tokenizer.get())
                                            : name;
      p.format = prompt_format_preset(p.prompt_format_name);
    } catch (const InputError& e) {
      throw InputError(where + ": " + e.what());
    }
  }
  p.options.dataset_format = parse_dataset_format(c.get_string("dataset_format"));
  p.options.task = parse_task(c.get_string("task"));
  p.options.train_on = parse_train_on(c.get_string("train_on"));
  p.options.truncation = parse_truncation(c.get_string("truncation"));
  p.options.on_invalid_sample = parse_on_invalid_sample(c.get_string("on_invalid_sample"));
  p.options.context_length = c.get_int("context_length");
  p.options.allow_special_tokens_in_content = c.get_bool("allow_special_tokens_in_content");
  return p;
}

}  // namespace ringtune
