// Everything the data path needs, built from a DataSpec (the data options of a config, see
// src/options/data_options.h): the tokenizer, the prompt format (preset, llmforge map, or auto
// from the model directory), DataOptions, and fingerprints of the inputs that decide the
// tokenized result (for cache invalidation and checkpoints).
// defines: DataSpec, DataPipeline, make_data_pipeline, file_fingerprint, text_fingerprint
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "src/data/dataset.h"
#include "src/data/prompt_format.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

// What to build a DataPipeline from.
struct DataSpec {
  std::string model_dir;        // initial_base_model_ckpt_path ("" when unset)
  std::string model_id;         // llmforge's model_id: its family picks a preset when nothing else can
  std::string tokenizer_path;   // tokenizer file or directory
  std::string tokenizer_where;  // names it in errors ("cfg.yaml:4: tokenizer_path")
  std::string prompt_format = "auto";  // a preset name, "auto", or "custom" for custom_format
  PromptFormat custom_format;          // an llmforge prompt_format map (already validated)
  std::string format_where;            // names the format in errors
  std::string chat_template;           // the config's own Jinja template (text); empty: the model's
  std::string chat_template_where;     // names it in errors ("cfg.yaml:7: chat_template")
  std::string chat_template_kwargs;    // JSON object of extra template variables; empty: none
  // response_template given as token ids (options.response_template_text holds it given as text).
  std::vector<int32_t> response_template_ids;
  std::string response_template_where;  // names it in errors
  DataOptions options;  // options.response_template is filled by make_data_pipeline
};

struct DataPipeline {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path;            // as resolved (file or directory)
  std::vector<std::string> tokenizer_files;  // the files that define it (hashed)
  std::string prompt_format_name;        // preset name, "custom", or "chat_template"
  PromptFormat format;                   // the llmforge format or preset (unused with a chat template)
  std::shared_ptr<const ChatRenderer> renderer;  // renders conversations (either kind)
  DataOptions options;
  std::string model_dir;                 // initial_base_model_ckpt_path

  // Hex fingerprint of the tokenizer files.
  std::string tokenizer_hash() const;
  // Hex fingerprint of everything else that shapes tokenization: format, options, code version.
  std::string format_hash() const;
};

// Loads the tokenizer and resolves the prompt format. auto: the model's own Jinja chat template
// (tokenizer_config.json or chat_template.jinja) whenever it has one, else the preset its
// vocabulary asks for (with task causal_lm, no format). A chat_template in the spec takes the
// place of the model's. InputError naming spec.tokenizer_where, spec.format_where or the
// template's source for a bad tokenizer path, format or template.
DataPipeline make_data_pipeline(const DataSpec& spec);

// `name` a preset, or auto (the chat template of model_dir, else the preset its vocabulary asks
// for): the renderer `generate --format` uses. `tokenizer` must outlive it. InputError otherwise.
std::shared_ptr<const ChatRenderer> resolve_renderer(const std::string& name, const std::string& model_dir,
                                                     const Tokenizer& tokenizer);

// 64-bit FNV-1a over the bytes of the files (names excluded), streamed; hex string.
std::string file_fingerprint(const std::vector<std::string>& paths);
// The same hash over a string.
std::string text_fingerprint(const std::string& text);

}  // namespace ringtune
