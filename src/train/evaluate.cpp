// Validation loss and generation-based exact match; see evaluate.h.
#include "src/train/evaluate.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distributed/progress.h"
#include "model/generate.h"
#include "model/llama.h"
#include "src/data/data_pipeline.h"
#include "src/data/record_reader.h"
#include "src/data/loss_mask.h"
#include "src/data/prompt_format.h"
#include "src/data/sample_parser.h"
#include "src/data/utf8.h"
#include "src/error.h"
#include "src/train/loss.h"
#include "src/train/model_setup.h"
#include "src/train/packing.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Loss

LossEval evaluate_loss(LlamaForCausalLM& model, const std::vector<PackedSequence>& seqs, int64_t batch_size,
                       size_t begin, size_t end) {
  if (batch_size < 1) throw Error("evaluate_loss: batch_size must be >= 1");
  end = std::min(end, seqs.size());
  begin = std::min(begin, end);
  torch::NoGradGuard no_grad;
  const bool training = model->is_training();
  model->eval();
  LossEval r;
  const size_t batch = static_cast<size_t>(batch_size);
  for (size_t i = begin; i < end; i += batch) {
    SequenceBatch b;
    b.pad_to_longest = true;  // no gradient, no dropout: the padding cut off changes nothing but time
    for (size_t j = i; j < std::min(end, i + batch); ++j) {
      b.rows.push_back(&seqs[j]);
      r.supervised_tokens += seqs[j].supervised;
    }
    r.loss_sum += batch_loss_sum(model, b).item<double>();
    note_progress();
  }
  model->train(training);
  r.sequences = static_cast<int64_t>(end - begin);
  r.loss = r.supervised_tokens ? r.loss_sum / static_cast<double>(r.supervised_tokens) : std::nan("");
  r.perplexity = std::exp(r.loss);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Prompts and replies

namespace {

// trim_whitespace needs valid UTF-8; a reply decoded from arbitrary ids may not be.
std::string trim(const std::string& s) {
  if (first_invalid_utf8(s) < 0) return std::string(trim_whitespace(s));
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
  size_t b = 0, e = s.size();
  while (b < e && ws(s[b])) ++b;
  while (e > b && ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace

std::vector<int64_t> end_of_turn_ids(const Tokenizer& tokenizer, const ChatRenderer& format) {
  std::vector<int64_t> ids;
  for (int32_t id : format.turn_end_ids(tokenizer)) ids.push_back(id);
  for (int32_t id : tokenizer.special_ids().eos_ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  const int32_t eos = tokenizer.special_ids().eos;
  if (eos >= 0 && std::find(ids.begin(), ids.end(), eos) == ids.end()) ids.push_back(eos);
  return ids;
}

GenerationPrompt generation_prompt(const Tokenizer& tokenizer, const ChatRenderer& renderer,
                                   const Conversation& conversation, bool allow_special_tokens_in_content) {
  validate_conversation(conversation, ConversationUse::generation,
                        [](size_t i) { return "messages[" + std::to_string(i) + "]"; });
  RenderOptions ro;
  ro.allow_special_tokens_in_content = allow_special_tokens_in_content;
  ro.add_generation_prompt = true;
  const RenderedPrompt rendered = renderer.render(conversation, ro);
  const TokenizedSample tokens = tokenize_rendered(tokenizer, rendered);
  GenerationPrompt p;
  p.text = rendered.text;
  p.ids.assign(tokens.ids.begin(), tokens.ids.end());
  return p;
}

std::string reply_text(const Tokenizer& tokenizer, const ChatRenderer& format, const std::vector<int64_t>& generated,
                       const std::vector<int64_t>& stop_ids) {
  std::vector<int32_t> ids;
  for (int64_t id : generated) {
    if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) break;
    ids.push_back(static_cast<int32_t>(id));
  }
  std::string text = tokenizer.decode(ids, /*skip_special=*/true);
  const std::string suffix = format.reply_suffix();
  if (!suffix.empty()) {
    const size_t at = text.find(suffix);
    if (at != std::string::npos) text.resize(at);
  }
  return trim(text);
}

// ---------------------------------------------------------------------------------------------
// Exact match

ExactMatchResult evaluate_exact_match(LlamaForCausalLM& model, const DataPipeline& pipe, const std::string& path,
                                      const ExactMatchOptions& options) {
  torch::NoGradGuard no_grad;
  const bool training = model->is_training();
  model->eval();
  const Tokenizer& tok = *pipe.tokenizer;
  GenerateOptions go;
  go.stop_ids = end_of_turn_ids(tok, *pipe.renderer);
  const int64_t limit = model->config().max_position_embeddings;
  const int64_t vocab = model->config().vocab_size;
  SampleParser parser(pipe.options.dataset_format, ConversationUse::training, pipe.options.conversation_column,
                      pipe.options.conversation_style, pipe.options.alpaca_columns);
  RecordReader reader(path, pipe.options.max_line_bytes);
  ExactMatchResult result;
  std::string line;
  bool too_long = false;
  while (reader.next(line, too_long)) {
    if (options.limit > 0 && result.total >= options.limit) break;
    const std::string where = reader.location();
    Sample sample;
    GenerationPrompt prompt;
    try {
      reader.check(line, too_long);
      if (is_blank(line)) continue;
      sample = parser.parse(line, reader.line_number());
      if (sample.is_text) throw InputError(where + ": a text sample has no reference reply (exact match needs chat samples)");
      Conversation conv(sample.messages.begin(), sample.messages.end() - 1);
      prompt = generation_prompt(tok, *pipe.renderer, conv, pipe.options.allow_special_tokens_in_content);
    } catch (const InvalidSample& e) {
      if (pipe.options.on_invalid_sample == OnInvalidSample::error) throw InputError(where + ": " + e.what());
      ++result.skipped;
      continue;
    }
    check_token_ids(prompt.ids, vocab, where);
    GenerationRecord rec;
    rec.path = path;
    rec.line = reader.line_number();
    rec.prompt = prompt.text;
    rec.reference = trim(sample.messages.back().content);
    rec.prompt_tokens = static_cast<int64_t>(prompt.ids.size());
    if (rec.prompt_tokens >= limit) {
      spdlog::warn("{}: the prompt has {} tokens, the model's limit is {}: nothing generated", where,
                   rec.prompt_tokens, limit);
    } else {
      go.max_new_tokens = options.max_new_tokens;
      const auto seq = generate(model, prompt.ids, go);
      const std::vector<int64_t> gen(seq.begin() + static_cast<std::ptrdiff_t>(prompt.ids.size()), seq.end());
      rec.new_tokens = static_cast<int64_t>(gen.size());
      rec.stopped = !gen.empty() && std::find(go.stop_ids.begin(), go.stop_ids.end(), gen.back()) != go.stop_ids.end();
      rec.generated = reply_text(tok, *pipe.renderer, gen, go.stop_ids);
    }
    rec.match = rec.generated == rec.reference;
    ++result.total;
    result.correct += rec.match;
    spdlog::debug("{}: {} \"{}\" (reference \"{}\")", where, rec.match ? "match" : "no match", rec.generated, rec.reference);
    result.records.push_back(std::move(rec));
  }
  model->train(training);
  result.accuracy = result.total ? static_cast<double>(result.correct) / static_cast<double>(result.total) : 0.0;
  return result;
}

}  // namespace ringtune
