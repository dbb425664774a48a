// DatasetReader: lines -> samples -> tokens, with validation, skip counting and truncation.
#include "src/data/dataset.h"

#include <algorithm>
#include <memory>
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

DatasetReader::DatasetReader(std::vector<std::string> paths, DataOptions options,
                             std::shared_ptr<const ChatRenderer> renderer, const Tokenizer& tokenizer)
    : paths_(std::move(paths)),
      options_(options),
      renderer_(std::move(renderer)),
      tokenizer_(tokenizer),
      turn_end_ids_(renderer_->turn_end_ids(tokenizer)),
      parser_(options.dataset_format, conversation_use(options), options.conversation_column,
              options.conversation_style, options.alpaca_columns) {}

DatasetReader::DatasetReader(std::vector<std::string> paths, DataOptions options, PromptFormat format,
                             const Tokenizer& tokenizer)
    : DatasetReader(std::move(paths), options, std::make_shared<PromptRenderer>(std::move(format)), tokenizer) {}

DatasetReader::~DatasetReader() = default;

void DatasetReader::invalid(const InvalidSample& e) {
  const std::string where = reader_->location();
  if (options_.on_invalid_sample == OnInvalidSample::error) throw InputError(where + ": " + e.what());
  ++report_.invalid[e.reason()];
  report_.first_invalid.emplace(e.reason(), where + ": " + e.what());
}

bool DatasetReader::next(EncodedSample& out) {
  while (true) {
    if (!reader_) {
      if (file_index_ >= paths_.size()) return false;
      reader_ = std::make_unique<RecordReader>(paths_[file_index_], options_.max_line_bytes);
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
      reader_->check(line_, too_long);
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
    tokens = tokenize_causal_text(tokenizer_, sample.text, options_.allow_special_tokens_in_content,
                                  options_.task == Task::causal_lm ? 0 : sample.supervised_from);
    if (keep_text_) text = sample.text;
  } else {
    RenderOptions ro;
    ro.allow_special_tokens_in_content = options_.allow_special_tokens_in_content;
    ro.train_on = options_.task == Task::causal_lm ? TrainOn::all : options_.train_on;
    // TRL's completion-only loss: the completion is the last assistant message.
    if (sample.completion_only && ro.train_on == TrainOn::assistant) ro.train_on = TrainOn::last_assistant;
    const RenderedPrompt rendered = renderer_->render(sample.messages, ro);
    tokens = options_.task == Task::causal_lm ? tokenize_causal_rendered(tokenizer_, rendered, renderer_->writes_bos())
                                              : tokenize_rendered(tokenizer_, rendered);
    if (options_.task != Task::causal_lm) check_fidelity(sample.messages, tokens);
    if (keep_text_) text = rendered.text;
  }

  if (!options_.response_template.empty())
    apply_response_template(tokens, options_.response_template, options_.response_template_text);

  const int64_t limit = options_.context_length;
  // (the fidelity gate ran on the whole sample, before truncation)
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

// ---------------------------------------------------------------------------------------------
// Completion-only loss

std::vector<int32_t> response_template_ids(const Tokenizer& tokenizer, const std::string& text,
                                           const std::vector<int32_t>& ids, const std::string& where) {
  if (!ids.empty()) {
    for (const int32_t id : ids)
      if (id < 0 || id >= tokenizer.vocab_size())
        throw InputError(where + ": token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                         std::to_string(tokenizer.vocab_size() - 1) + ")");
    return ids;
  }
  std::vector<int32_t> out = tokenizer.encode(text);
  if (out.empty()) throw InputError(where + ": the response template encodes to no tokens");
  return out;
}

void apply_response_template(TokenizedSample& tokens, const std::vector<int32_t>& pattern,
                             const std::string& shown) {
  const std::vector<int32_t>& ids = tokens.ids;
  // The last occurrence, as TRL's collator takes it (a template that also appears inside the
  // prompt does not move the boundary forward).
  auto hit = std::find_end(ids.begin(), ids.end(), pattern.begin(), pattern.end());
  if (hit == ids.end()) {
    std::string ids_text;
    for (size_t i = 0; i < pattern.size() && i < 8; ++i) ids_text += (i ? "," : "") + std::to_string(pattern[i]);
    if (pattern.size() > 8) ids_text += ",...";
    throw InvalidSample("response_template_missing",
                        "the response template " + (shown.empty() ? std::string() : quote_for_error(shown, 40) + " ") +
                            "(ids [" + ids_text +
                            "]) does not occur in this sample's tokens (in context a template can tokenize "
                            "differently than alone: give response_template as a list of the ids it has in "
                            "context)");
  }
  const size_t end = static_cast<size_t>(hit - ids.begin()) + pattern.size();
  std::fill(tokens.loss_mask.begin(), tokens.loss_mask.begin() + static_cast<std::ptrdiff_t>(end), uint8_t{0});
}

// ---------------------------------------------------------------------------------------------
// The fidelity gate

namespace {

// A few tokens of ids around `at`, decoded, for messages.
std::string tokens_near(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, size_t at) {
  if (at >= ids.size()) return "(the end)";
  const size_t from = at >= 2 ? at - 2 : 0, to = std::min(ids.size(), at + 3);
  std::string shown = tokenizer.decode(std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(from),
                                                            ids.begin() + static_cast<std::ptrdiff_t>(to)));
  return quote_for_error(shown, 60) + " (token " + std::to_string(at) + ": " +
         quote_for_error(tokenizer.id_to_piece(ids[at]), 30) + ")";
}

}  // namespace

void DatasetReader::check_fidelity(const Conversation& conversation, const TokenizedSample& tokens) const {
  const std::vector<int32_t>& ids = tokens.ids;
  const int32_t bos = tokenizer_.special_ids().bos;
  if (bos >= 0) {
    const auto n = std::count(ids.begin(), ids.end(), bos);
    if (n > 1 || (n == 1 && ids.front() != bos))
      throw InvalidSample("fidelity_bos", "the rendered sample holds " + std::to_string(n) +
                                              " BOS tokens (the prompt format and the tokenizer both add one?); a "
                                              "model sees exactly one, at the start");
  }
  size_t last = conversation.size();
  for (size_t i = 0; i < conversation.size(); ++i)
    if (conversation[i].role == Role::assistant) last = i;
  if (last == conversation.size()) return;
  RenderOptions ro;
  ro.allow_special_tokens_in_content = options_.allow_special_tokens_in_content;
  ro.add_generation_prompt = true;
  const Conversation prompt(conversation.begin(), conversation.begin() + static_cast<std::ptrdiff_t>(last));
  const std::vector<int32_t> inference = tokenize_rendered(tokenizer_, renderer_->render(prompt, ro)).ids;
  size_t k = 0;
  while (k < inference.size() && k < ids.size() && inference[k] == ids[k]) ++k;
  if (k < inference.size())
    throw InvalidSample("fidelity_prefix",
                        "the prompt inference feeds for this conversation is not a prefix of the training sample: "
                        "training has " + tokens_near(tokenizer_, ids, k) + " where inference has " +
                            tokens_near(tokenizer_, inference, k) +
                            " (the format renders turns differently with add_generation_prompt, or the tokenizer "
                            "joins the prompt's end with the reply)");
  // The last run of supervised tokens is the last assistant reply.
  size_t end = tokens.loss_mask.size();
  while (end > 0 && !tokens.loss_mask[end - 1]) --end;
  size_t begin = end;
  while (begin > 0 && tokens.loss_mask[begin - 1]) --begin;
  // The model continues from the prompt inference feeds: training must supervise the reply from
  // there on, with no template token between them that only training sees.
  if (options_.train_on != TrainOn::all && end > 0 && inference.size() < begin)
    throw InvalidSample("fidelity_gap",
                        "training has " + std::to_string(begin - inference.size()) +
                            " unsupervised token(s) between the prompt inference feeds and the last reply, from " +
                            tokens_near(tokenizer_, ids, inference.size()) +
                            ": at inference the model would have to write them and nothing teaches it to (the "
                            "tokenizer joins the prompt's end with the reply, e.g. a trailing space or newline, or "
                            "the template writes more after the generation prompt in training)");
  if (turn_end_ids_.empty()) return;
  // Its end-of-turn token must carry loss.
  for (size_t i = begin; i < end; ++i)
    if (std::find(turn_end_ids_.begin(), turn_end_ids_.end(), ids[i]) != turn_end_ids_.end()) return;
  throw InvalidSample("fidelity_end_of_turn", "the end-of-turn token " +
                                                  quote_for_error(tokenizer_.id_to_piece(turn_end_ids_[0]), 30) +
                                                  " after the last assistant reply carries no loss, so the model "
                                                  "would not learn to stop");
}

}  // namespace ringtune
