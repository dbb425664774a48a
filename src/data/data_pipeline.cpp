// DataSpec -> tokenizer, prompt format and data options; fingerprints for the prepared-data cache.
#include "src/data/data_pipeline.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

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

  if (spec.prompt_format == "custom") {
    p.format = spec.custom_format;
    p.prompt_format_name = "custom";
  } else {
    const std::string where_to_look = p.model_dir.empty() ? p.tokenizer_path : p.model_dir;
    std::string name = spec.prompt_format;
    // Plain-text training (task causal_lm) renders no conversation: a model without a chat
    // template is then fine, and `auto` means no format.
    if (name == "auto" && spec.options.task == Task::causal_lm) {
      try {
        detect_prompt_format_preset(where_to_look, p.tokenizer.get());
      } catch (const InputError&) {
        name = "none";
      }
    }
    try {
      p.prompt_format_name = name == "auto" ? detect_prompt_format_preset(where_to_look, p.tokenizer.get()) : name;
      p.format = prompt_format_preset(p.prompt_format_name);
    } catch (const InputError& e) {
      throw InputError(spec.format_where + ": " + e.what());
    }
  }
  p.options = spec.options;
  return p;
}

}  // namespace ringtune
