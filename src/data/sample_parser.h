// One JSONL line -> one sample: JSON parsing, dataset-format detection (OpenAI `messages`,
// ShareGPT `conversations`, Alpaca `instruction`/`input`/`output`, plain `text`) and enforcement,
// and validation. Every failure is an InvalidSample with a reason code and a one-line message.
// defines: DatasetFormat, parse_dataset_format, dataset_format_name, Sample, SampleParser
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "src/data/conversation.h"

namespace ringtune {

enum class DatasetFormat { auto_detect, openai, sharegpt, alpaca, text, prompt_completion };
DatasetFormat parse_dataset_format(const std::string& value);  // throws InputError naming the key
const char* dataset_format_name(DatasetFormat format);          // "auto", "openai", ...

// The keys of an Alpaca record (torchtune's column_map renames them, e.g. {output: answer}).
struct AlpacaColumns {
  std::string instruction = "instruction", input = "input", output = "output", system = "system";
  bool operator==(const AlpacaColumns& o) const {
    return instruction == o.instruction && input == o.input && output == o.output && system == o.system;
  }
};

struct Sample {
  Conversation messages;  // chat formats (Alpaca becomes [system] user assistant)
  std::string text;       // the `text` format, or a plain prompt/completion as prompt + completion
  bool is_text = false;
  size_t supervised_from = 0;    // text: the loss starts at this byte (the completion's first)
  bool completion_only = false;  // conversational prompt/completion: the loss is on the completion
};

class SampleParser {
 public:
  // `use` is how conversations are checked (training, generation, or causal_lm). A non-empty
  // conversation_column is the key of the conversation (instead of "messages" / "conversations");
  // conversation_style says how its messages are written (openai: role/content, sharegpt:
  // from/value; auto_detect: ShareGPT when the first message has "from" or "value").
  SampleParser(DatasetFormat format, ConversationUse use, std::string conversation_column = "",
               DatasetFormat conversation_style = DatasetFormat::auto_detect, AlpacaColumns alpaca = {});

  // Parses one non-blank line. With DatasetFormat::auto_detect the first line that parses fixes
  // the format (line_number is remembered for messages); every later line must have it.
  Sample parse(std::string_view line, int64_t line_number);

  // Starts a new file: an auto-detected format is forgotten.
  void reset();

  DatasetFormat format() const { return format_; }

 private:
  Sample parse_as_format(const nlohmann::json& obj) const;

  DatasetFormat configured_;
  DatasetFormat format_;
  ConversationUse use_;
  std::string column_;
  DatasetFormat style_;
  AlpacaColumns alpaca_;
  int64_t detected_at_ = 0;
};

}  // namespace ringtune
