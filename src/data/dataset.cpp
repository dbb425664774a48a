// DatasetReader: lines -> samples -> tokens, with validation, skip counting and truncation.
#include "src/data/dataset.h"

#include <sstream>

#include "src/data/utf8.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Option names

Task parse_task(const std::string& value) {
  // "chat" is the config key's name; llmforge calls the same task "instruction_tuning".
  if (value == "chat" || value == "instruction_tuning") return Task::instruction_tuning;
  if (value == "causal_lm") return Task::causal_lm;
  throw InputError("task: " + quote_for_error(value) + " is not one of chat, causal_lm");
}

Truncation parse_truncation(const std::string& value) {
  if (value == "drop") return Truncation::drop;
  if (value == "truncate_left") return Truncation::truncate_left;
  if (value == "truncate_right") return Truncation::truncate_right;
  throw InputError("truncation: " + quote_for_error(value) +
                   " is not one of drop, truncate_left, truncate_right");
}

OnInvalidSample parse_on_invalid_sample(const std::string& value) {
  if (value == "error") return OnInvalidSample::error;
  if (value == "skip") return OnInvalidSample::skip;
  throw InputError("on_invalid_sample: " + quote_for_error(value) + " is not one of error, skip");
}

const char* task_name(Task value) {
  return value == Task::causal_lm ? "causal_lm" : "chat";
}

const char* truncation_name(Truncation value) {
  switch (value) {
    case Truncation::drop: return "drop";
    case Truncation::truncate_left: return "truncate_left";
    case Truncation::truncate_right: return "truncate_right";
  }
  return "?";
}

const char* on_invalid_sample_name(OnInvalidSample value) {
  return value == OnInvalidSample::skip ? "skip" : "error";
}

// ---------------------------------------------------------------------------------------------
// Report

int64_t DataReport::invalid_total() const {
  int64_t n = 0;
  for (const auto& [reason, count] : invalid) n += count;
  return n;
}

std::string DataReport::summary() const {
  std::ostringstream out;
  out << samples << " samples from " << lines << " lines (" << blank_lines << " blank)";
  if (truncated) out << "; " << truncated << " truncated to context_length";
  if (dropped_too_long) out << "; " << dropped_too_long << " dropped as longer than context_length";
  if (dropped_no_supervised) out << "; " << dropped_no_supervised << " dropped with no token to train on";
  if (!invalid.empty()) {
    out << "; " << invalid_total() << " invalid samples skipped:";
    for (const auto& [reason, count] : invalid) {
      out << "\n  " << reason << ": " << count;
      const auto it = first_invalid.find(reason);
      if (it != first_invalid.end()) out << " (first: " << it->second << ")";
    }
  }
  return out.str();
}

// ---------------------------------------------------------------------------------------------
// Reader

namespace {

ConversationUse conversation_use(const DataOptions& o) {
  return o.task == Task::causal_lm ? ConversationUse::causal_lm : ConversationUse::training;
}

}  // namespace

DatasetReader::DatasetReader(std::vector<std::string> paths, DataOptions options, PromptFormat format,
                             const Tokenizer& tokenizer)
    : paths_(std::move(paths)),
      options_(options),
      renderer_(std::move(format)),
      tokenizer_(tokenizer),
      parser_(options.dataset_format, conversation_use(options)) {}

DatasetReader::~DatasetReader() = default;

void DatasetReader::invalid(const InvalidSample& e) {
  const std::string where = reader_->path() + ":" + std::to_string(reader_->line_number());
  if (options_.on_invalid_sample == OnInvalidSample::error) throw InputError(where + ": " + e.what());
  ++report_.invalid[e.reason()];
  report_.first_invalid.emplace(e.reason(), where + ": " + e.what());
}

bool DatasetReader::next(EncodedSample& out) {
  while (true) {
    if (!reader_) {
      if (file_index_ >= paths_.size()) return false;
      reader_ = std::make_unique<JsonlLineReader>(paths_[file_index_], options_.max_line_bytes);
      parser_.reset();
    }
    bool too_long = false;
    if (!reader_->next(line_, too_long)) {
      reader_.reset();
      ++file_index_;
      continue;
    }
    ++report_.lines;
    try {
      if (too_long)
        throw InvalidSample("line_too_long", "the line is longer than " +
                                                 std::to_string(options_.max_line_bytes) + " bytes");
      const int64_t bad = first_invalid_utf8(line_);
      if (bad >= 0)
        throw InvalidSample("invalid_utf8", "invalid UTF-8 at byte " + std::to_string(bad));
      if (is_blank(line_)) {
        ++report_.blank_lines;
        continue;
      }
      const Sample sample = parser_.parse(line_, reader_->line_number());
      if (encode(sample, out)) {
        out.path = reader_->path();
        out.line = reader_->line_number();
        ++report_.samples;
        return true;
      }
    } catch (const InvalidSample& e) {
      invalid(e);
    }
  }
}

bool DatasetReader::encode(const Sample& sample, EncodedSample& out) {
  TokenizedSample tokens;
  std::string text;
  if (sample.is_text) {
    tokens = tokenize_causal_text(tokenizer_, sample.text, options_.allow_special_tokens_in_content);
    if (keep_text_) text = sample.text;
  } else {
    RenderOptions ro;
    ro.allow_special_tokens_in_content = options_.allow_special_tokens_in_content;
    ro.train_on = options_.task == Task::causal_lm ? TrainOn::all : options_.train_on;
    const RenderedPrompt rendered = renderer_.render(sample.messages, ro);
    tokens = options_.task == Task::causal_lm
                 ? tokenize_causal_rendered(tokenizer_, rendered, !renderer_.format().bos.empty())
                 : tokenize_rendered(tokenizer_, rendered);
    if (keep_text_) text = rendered.text;
  }

  const int64_t limit = options_.context_length;
  bool truncated = false;
  if (limit > 0 && static_cast<int64_t>(tokens.ids.size()) > limit) {
    if (options_.truncation == Truncation::drop) {
      ++report_.dropped_too_long;
      return false;
    }
    const size_t n = static_cast<size_t>(limit);
    if (options_.truncation == Truncation::truncate_right) {
      tokens.ids.resize(n);
      tokens.loss_mask.resize(n);
    } else {
      tokens.ids.erase(tokens.ids.begin(), tokens.ids.end() - static_cast<std::ptrdiff_t>(n));
      tokens.loss_mask.erase(tokens.loss_mask.begin(),
                             tokens.loss_mask.end() - static_cast<std::ptrdiff_t>(n));
    }
    tokens.loss_mask[0] = 0;  // the new first token has nothing before it
    truncated = true;
  }
  if (tokens.supervised_count() == 0) {
    ++report_.dropped_no_supervised;
    return false;
  }
  if (truncated) ++report_.truncated;
  out.ids = std::move(tokens.ids);
  out.loss_mask = std::move(tokens.loss_mask);
  out.text = std::move(text);
  return true;
}

}  // namespace ringtune
