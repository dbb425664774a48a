// Data options from a Config; see data_options.h.
#include "src/options/data_options.h"

#include "src/config/key_origins.h"
#include "src/config/registry.h"
#include "src/error.h"

namespace ringtune {

DataSpec data_spec_from_config(const Config& c) {
  const KeyOrigins origins(c);
  DataSpec s;
  s.model_dir = c.is_set("initial_base_model_ckpt_path") ? c.get_string("initial_base_model_ckpt_path") : "";
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

  DataOptions& o = s.options;
  o.dataset_format = parse_dataset_format(c.get_string("dataset_format"));
  o.task = parse_task(c.get_string("task"));
  o.train_on = parse_train_on(c.get_string("train_on"));
  o.truncation = parse_truncation(c.get_string("truncation"));
  o.on_invalid_sample = parse_on_invalid_sample(c.get_string("on_invalid_sample"));
  o.context_length = c.get_int("context_length");
  o.allow_special_tokens_in_content = c.get_bool("allow_special_tokens_in_content");
  return s;
}

DataPipeline make_data_pipeline(const Config& config) { return make_data_pipeline(data_spec_from_config(config)); }

}  // namespace ringtune
