// Fuzz target: data files (JSON Lines or a JSON array of records) through DatasetReader: the record
// reader (src/data/record_reader.cpp, jsonl_reader.cpp), the sample parser (format detection,
// OpenAI / ShareGPT / Alpaca / text / prompt-completion records), conversation checks, a prompt
// format and tokenization with a small fixed tokenizer. The input is written as data.jsonl (always
// JSON Lines) and as data.json (JSON Lines or an array, by its first byte) and read as
// instruction tuning (invalid samples skipped, short context, truncate_left) and as causal LM
// (invalid samples are errors, truncation drop).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "src/data/dataset.h"
#include "src/error.h"
#include "src/tokenizer/tokenizer.h"
#include "fuzz_util.h"
#include "tiny_tokenizer.h"

using namespace ringtune;

namespace {

const Tokenizer& tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    std::filesystem::create_directories(rt_fuzz::scratch_dir() + "/tok");
    return load_tokenizer(rt_fuzz::write_file("tok/tokenizer.json", rt_fuzz::tiny_tokenizer_json()));
  }();
  return *tok;
}

void read_all(const std::vector<std::string>& paths, const DataOptions& options) {
  const Tokenizer& tok = tokenizer();
  DatasetReader reader(paths, options, prompt_format_preset("llama3"), tok);
  EncodedSample s;
  try {
    while (reader.next(s)) {
      if (s.ids.size() != s.loss_mask.size()) std::abort();
      if (options.context_length > 0 && static_cast<int64_t>(s.ids.size()) > options.context_length) std::abort();
    }
  } catch (const InputError&) {
    return;
  }
  (void)reader.report().summary();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string jsonl = rt_fuzz::write_file("data.jsonl", data, size);
  const std::string json = rt_fuzz::write_file("data.json", data, size);
  DataOptions chat;
  chat.on_invalid_sample = OnInvalidSample::skip;
  chat.context_length = 48;
  chat.truncation = Truncation::truncate_left;
  chat.max_line_bytes = 4096;
  read_all({jsonl, json}, chat);
  DataOptions lm;
  lm.task = Task::causal_lm;
  lm.context_length = 64;
  read_all({json}, lm);
  return 0;
}
