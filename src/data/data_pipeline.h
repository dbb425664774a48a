// From a resolved Config to everything the data path needs: the tokenizer, the prompt format
// (preset, llmforge map, or auto from the model directory), DataOptions, and fingerprints of the
// inputs that decide the tokenized result (for cache invalidation and checkpoints).
// defines: DataPipeline, make_data_pipeline, file_fingerprint
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "src/data/dataset.h"
#include "src/data/prompt_format.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

class Config;  // src/config/registry.h

struct DataPipeline {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path;            // as resolved (file or directory)
  std::vector<std::string> tokenizer_files;  // the files that define it (hashed)
  std::string prompt_format_name;        // preset name, or "custom"
  PromptFormat format;
  DataOptions options;
  std::string model_dir;                 // initial_base_model_ckpt_path

  // Hex fingerprint of the tokenizer files.
  std::string tokenizer_hash() const;
  // Hex fingerprint of everything else that shapes tokenization: format, options, code version.
  std::string format_hash() const;
};

// Throws InputError naming the config key (and file:line) for a bad tokenizer path or format.
DataPipeline make_data_pipeline(const Config& config);

// 64-bit FNV-1a over the bytes of the files (names excluded), streamed; hex string.
std::string file_fingerprint(const std::vector<std::string>& paths);
// The same hash over a string.
std::string text_fingerprint(const std::string& text);

}  // namespace ringtune
