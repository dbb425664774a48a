// Data options from a Config; see data_options.h.
#include "src/options/data_options.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/config/key_origins.h"
#include "src/config/registry.h"
#include "src/error.h"

namespace fs = std::filesystem;

namespace ringtune {

DataSpec data_spec_from_config(const Config& c) {
  const KeyOrigins origins(c);
  DataSpec s;
  s.model_dir = c.is_set("initial_base_model_ckpt_path") ? c.get_string("initial_base_model_ckpt_path") : "";
  std::error_code ec;
  if (!s.model_dir.empty() && !fs::exists(s.model_dir, ec))
    origins.fail("initial_base_model_ckpt_path", s.model_dir + " does not exist");
  if (!s.model_dir.empty() && !fs::is_directory(s.model_dir, ec))
    origins.fail("initial_base_model_ckpt_path",
                 s.model_dir + " is a file; expected a Hugging Face model directory (config.json + *.safetensors)");
  if (c.is_set("model_id")) s.model_id = c.get_string("model_id");
  const std::string tok_key = c.is_set("tokenizer_path") ? "tokenizer_path" : "initial_base_model_ckpt_path";
  if (!c.is_set(tok_key)) throw InputError(c.source_name() + ": set tokenizer_path or initial_base_model_ckpt_path");
  s.tokenizer_path = c.get_string(tok_key);
  s.tokenizer_where = origins.where(tok_key);

  const std::string pf = "generation_config.prompt_format";
  s.format_where = origins.where(pf);
  if (c.is_set(pf + ".user") || c.is_set(pf + ".system") || c.is_set(pf + ".assistant")) {
    auto str = [&](const std::string& k) { return c.is_set(pf + "." + k) ? c.get_string(pf + "." + k) : ""; };
    PromptFormat& f = s.custom_format;
    f.system = str("system");
    f.user = str("user");
    f.assistant = str("assistant");
    f.trailing_assistant = str("trailing_assistant");
    f.bos = str("bos");
    f.default_system_message = str("default_system_message");
    f.system_in_user = c.is_set(pf + ".system_in_user") && c.get_bool(pf + ".system_in_user");
    f.strip_whitespace = !c.is_set(pf + ".strip_whitespace") || c.get_bool(pf + ".strip_whitespace");
    validate_prompt_format(f, origins.origin(pf + ".user") + ": " + pf);
    s.prompt_format = "custom";
  } else {
    s.prompt_format = c.get_string(pf);
  }
  if (c.is_set("chat_template")) {
    if (s.prompt_format != "auto")
      origins.fail("chat_template", "a chat template and the generation_config.prompt_format " +
                                        std::string(s.prompt_format == "custom" ? "map" : "preset " + s.prompt_format) +
                                        " both say how to render; keep one");
    const std::string value = c.get_string("chat_template");
    // A file when the value names one (relative to the config file), else the template itself.
    fs::path file(value);
    if (file.is_relative()) {
      const std::string cfg_file = c.origin("chat_template").file;
      if (c.origin("chat_template").kind == Origin::Kind::File && !cfg_file.empty())
        file = fs::path(cfg_file).parent_path() / file;
    }
    std::error_code ec;
    const bool looks_like_template = value.find("{%") != std::string::npos || value.find("{{") != std::string::npos;
    if (!looks_like_template && value.find('\n') == std::string::npos && fs::is_regular_file(file, ec)) {
      std::ifstream in(file);
      std::stringstream ss;
      ss << in.rdbuf();
      s.chat_template = ss.str();
      s.chat_template_where = file.string();
    } else if (!looks_like_template) {
      origins.fail("chat_template", "neither a Jinja template nor an existing file: " + value);
    } else {
      s.chat_template = value;
      s.chat_template_where = origins.where("chat_template");
    }
  }
  if (c.is_set("chat_template_kwargs")) s.chat_template_kwargs = c.get_string("chat_template_kwargs");

  DataOptions& o = s.options;
  o.dataset_format = parse_dataset_format(c.get_string("dataset_format"));
  if (c.is_set("conversation_column")) {
    o.conversation_column = c.get_string("conversation_column");
    if (o.conversation_column.empty()) origins.fail("conversation_column", "must not be empty");
    if (o.dataset_format == DatasetFormat::alpaca || o.dataset_format == DatasetFormat::text)
      origins.fail("conversation_column", std::string("names a conversation, but dataset_format is ") +
                                              dataset_format_name(o.dataset_format));
  }
  o.conversation_style = parse_dataset_format(c.get_string("conversation_style"));
  if (c.is_set("column_map")) {
    const auto map = nlohmann::json::parse(c.get_string("column_map"));
    for (const auto& [field, column] : map.items()) {
      std::string* slot = field == "instruction" ? &o.alpaca_columns.instruction
                          : field == "input"     ? &o.alpaca_columns.input
                          : field == "output"    ? &o.alpaca_columns.output
                          : field == "system"    ? &o.alpaca_columns.system
                                                 : nullptr;
      if (!slot) origins.fail("column_map", "\"" + field + "\" is not one of instruction, input, output, system");
      if (!column.is_string() || column.get<std::string>().empty())
        origins.fail("column_map", "\"" + field + "\" must name a column (a non-empty string)");
      *slot = column.get<std::string>();
    }
    if (o.dataset_format != DatasetFormat::alpaca && o.dataset_format != DatasetFormat::auto_detect)
      origins.fail("column_map", std::string("renames Alpaca columns, but dataset_format is ") +
                                     dataset_format_name(o.dataset_format));
  }
  o.task = parse_task(c.get_string("task"));
  o.train_on = parse_train_on(c.get_string("train_on"));
  o.truncation = parse_truncation(c.get_string("truncation"));
  o.on_invalid_sample = parse_on_invalid_sample(c.get_string("on_invalid_sample"));
  o.context_length = c.get_int("context_length");
  o.allow_special_tokens_in_content = c.get_bool("allow_special_tokens_in_content");
  if (c.is_set("response_template")) {
    // A YAML list of integers is token ids; a string (even one of digits) is text.
    const std::vector<std::string> items = c.get_strings("response_template");
    const bool listed = c.text("response_template").rfind('[', 0) == 0;
    bool all_ints = listed && !items.empty();
    for (const std::string& item : items)
      all_ints = all_ints && !item.empty() && item.size() < 10 &&
                 item.find_first_not_of("0123456789", item[0] == '-' ? 1 : 0) == std::string::npos &&
                 item != "-";
    s.response_template_where = origins.where("response_template");
    if (all_ints) {
      for (const std::string& item : items) s.response_template_ids.push_back(std::stoi(item));
    } else if (items.size() == 1 && !items[0].empty()) {
      o.response_template_text = items[0];
    } else {
      origins.fail("response_template", "expected a string or a list of token ids, got " + c.text("response_template"));
    }
  }
  return s;
}

DataPipeline make_data_pipeline(const Config& config) { return make_data_pipeline(data_spec_from_config(config)); }

}  // namespace ringtune
