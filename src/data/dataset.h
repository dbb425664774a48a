// Streaming chat/text datasets: JSONL files -> validated samples -> prompt format -> token ids and
// loss masks -> over-length handling, with every skipped or dropped sample counted by reason.
// defines: Task, Truncation, OnInvalidSample, DataOptions, EncodedSample, DataReport, DatasetReader
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/data/record_reader.h"
#include "src/data/loss_mask.h"
#include "src/data/prompt_format.h"
#include "src/data/sample_parser.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Options (names equal the YAML keys)

enum class Task {
  instruction_tuning,  // chat: loss per train_on (assistant turns by default)
  causal_lm,           // loss on every token; bos/eos from the tokenizer
};
enum class Truncation { drop, truncate_left, truncate_right };
enum class OnInvalidSample { error, skip };

Task parse_task(const std::string& value);  // each throws InputError naming its key
Truncation parse_truncation(const std::string& value);
OnInvalidSample parse_on_invalid_sample(const std::string& value);
const char* task_name(Task value);
const char* truncation_name(Truncation value);
const char* on_invalid_sample_name(OnInvalidSample value);

struct DataOptions {
  DatasetFormat dataset_format = DatasetFormat::auto_detect;  // auto|openai|sharegpt|alpaca|text
  Task task = Task::instruction_tuning;
  TrainOn train_on = TrainOn::assistant;  // instruction_tuning only; causal_lm trains on all
  Truncation truncation = Truncation::drop;
  OnInvalidSample on_invalid_sample = OnInvalidSample::error;
  int64_t context_length = 2048;  // tokens per sample at most; <= 0: no limit
  bool allow_special_tokens_in_content = false;
  size_t max_line_bytes = size_t{64} << 20;  // longer lines are invalid ("line_too_long")
  // The key of a conversation when not "messages"/"conversations" (torchtune's and axolotl's
  // conversation_column), and how its messages are written (auto_detect, openai or sharegpt).
  std::string conversation_column;
  DatasetFormat conversation_style = DatasetFormat::auto_detect;
  AlpacaColumns alpaca_columns;  // torchtune's column_map for Alpaca records
  // Completion-only loss for causal_lm (TRL's DataCollatorForCompletionOnlyLM): the loss falls only
  // on the tokens after the last occurrence of this token sequence in each sample; a sample
  // without it is invalid ("response_template_missing"). Empty: every token carries loss.
  // response_template_text is what the user wrote when they gave text (for messages), else empty.
  std::vector<int32_t> response_template;
  std::string response_template_text;
};

// The token ids of a response template: `ids` as given, or `text` encoded without bos/eos (as TRL
// encodes it with add_special_tokens=False). InputError (naming `where`) when it has no tokens.
std::vector<int32_t> response_template_ids(const Tokenizer& tokenizer, const std::string& text,
                                           const std::vector<int32_t>& ids, const std::string& where);

// Keeps the loss of `tokens` only after the last occurrence of `pattern` in its ids; throws
// InvalidSample("response_template_missing") when it does not occur.
void apply_response_template(TokenizedSample& tokens, const std::vector<int32_t>& pattern,
                             const std::string& shown);

// ---------------------------------------------------------------------------------------------
// Output

struct EncodedSample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // 1: token i is a target of the loss
  std::string path;                // where the sample came from
  int64_t line = 0;
  std::string text;  // the rendered text, only with DatasetReader::set_keep_text(true)
};

struct DataReport {
  int64_t lines = 0;        // lines read, blank ones included
  int64_t blank_lines = 0;  // empty or whitespace-only lines: skipped silently
  int64_t samples = 0;      // samples returned by next()
  int64_t truncated = 0;    // over-length samples cut to context_length
  int64_t dropped_too_long = 0;       // over-length samples dropped (truncation: drop)
  int64_t dropped_no_supervised = 0;  // no token carries loss (after truncation)
  std::map<std::string, int64_t> invalid;            // skipped invalid samples by reason code
  std::map<std::string, std::string> first_invalid;  // reason -> "file:line: message"

  int64_t invalid_total() const;
  std::string summary() const;  // a few lines for the log
};

// ---------------------------------------------------------------------------------------------
// Reader

// Reads the files in order, one line at a time (memory does not grow with file size). Blank
// lines are skipped silently. Chat samples pass the fidelity gate before anything else is
// checked: the ids inference would feed for the conversation up to its last assistant message
// (rendered with add_generation_prompt) are a prefix of the training ids, there is at most one
// BOS and only at the start, and the format's end-of-turn token after the last reply carries
// loss (when the format has one); unless train_on is all, the last reply's supervised tokens
// start right where that prompt ends (no template token that only training sees between them).
// A sample that fails is invalid (reasons "fidelity_prefix", "fidelity_bos", "fidelity_gap",
// "fidelity_end_of_turn"), with the first differing token decoded. The dataset format is
// dataset_format, or (auto) detected from the first valid line of each file and then required
// of every line of that file.
//
// on_invalid_sample: error -> next() throws InputError "<file>:<line>: <reason>";
//                    skip  -> the sample is counted in report().invalid[reason] and skipped.
// Over-length samples (more than context_length tokens) follow `truncation`: drop (counted),
// truncate_right (keep the first context_length tokens) or truncate_left (keep the last ones);
// a sample left with no supervised token is dropped and counted. These are never errors.
class DatasetReader {
 public:
  DatasetReader(std::vector<std::string> paths, DataOptions options, std::shared_ptr<const ChatRenderer> renderer,
                const Tokenizer& tokenizer);
  // An llmforge format or preset (PromptRenderer).
  DatasetReader(std::vector<std::string> paths, DataOptions options, PromptFormat format,
                const Tokenizer& tokenizer);
  ~DatasetReader();

  // The next sample, or false when every file is read.
  bool next(EncodedSample& out);

  const DataReport& report() const { return report_; }
  void set_keep_text(bool keep) { keep_text_ = keep; }

 private:
  bool encode(const Sample& sample, EncodedSample& out);
  void check_fidelity(const Conversation& conversation, const TokenizedSample& tokens) const;
  void invalid(const InvalidSample& e);

  std::vector<std::string> paths_;
  DataOptions options_;
  std::shared_ptr<const ChatRenderer> renderer_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> turn_end_ids_;
  SampleParser parser_;
  size_t file_index_ = 0;
  std::unique_ptr<RecordReader> reader_;
  std::string line_;
  DataReport report_;
  bool keep_text_ = false;
};

}  // namespace ringtune
