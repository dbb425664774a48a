// Evaluation of a model on held-out data: the mean supervised-token loss over packed sequences
// (validation loss and perplexity, used by `train` and `eval`), and generation-based exact match
// (each sample's prompt — the conversation before its last assistant turn, rendered with the
// run's prompt format exactly as training renders it, plus trailing_assistant — is continued
// greedily until the format's end-of-turn token; the decoded, trimmed reply is compared with the
// reference). The prompt and stop helpers are shared with `generate --messages`.
// defines: LossEval, evaluate_loss, end_of_turn_ids, generation_prompt, GenerationPrompt,
//          reply_text, GenerationRecord, ExactMatchOptions, ExactMatchResult, evaluate_exact_match
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/data/conversation.h"

namespace ringtune {

class LlamaForCausalLM;  // model/llama.h
struct PackedSequence;   // src/train/packing.h
struct DataPipeline;     // src/data/data_pipeline.h
class ChatRenderer;     // src/data/prompt_format.h
class Tokenizer;         // src/tokenizer/tokenizer.h

// ---------------------------------------------------------------------------------------------
// Loss

struct LossEval {
  double loss_sum = 0;    // sum of token cross-entropies over the supervised tokens
  double loss = 0;        // loss_sum / supervised tokens (NaN when none)
  double perplexity = 0;  // exp(loss)
  int64_t supervised_tokens = 0;
  int64_t sequences = 0;
};

// Mean next-token loss over every supervised token of seqs[begin, end) (end clamped to the size;
// by default all of them), `batch_size` sequences per forward pass, without gradients. The
// model's training mode is restored afterwards.
LossEval evaluate_loss(LlamaForCausalLM& model, const std::vector<PackedSequence>& seqs, int64_t batch_size,
                       size_t begin = 0, size_t end = static_cast<size_t>(-1));

// ---------------------------------------------------------------------------------------------
// Prompts and replies for generation

// The ids that end a reply: the format's end-of-turn token (the assistant template's text after
// {instruction}, trimmed — "<|eot_id|>", "<|im_end|>", "</s>" — when it is one token), then the
// tokenizer's eos ids. Never empty when the tokenizer has an eos.
std::vector<int64_t> end_of_turn_ids(const Tokenizer& tokenizer, const ChatRenderer& format);

struct GenerationPrompt {
  std::string text;          // the rendered prompt
  std::vector<int64_t> ids;  // its token ids, exactly as training tokenizes the same prefix
};

// `conversation` ends with a user message (checked: InvalidSample otherwise). Rendered with
// add_generation_prompt (trailing_assistant) and tokenized as training does (template text may
// hold special tokens, message content only when allow_special_tokens_in_content).
GenerationPrompt generation_prompt(const Tokenizer& tokenizer, const ChatRenderer& format,
                                   const Conversation& conversation, bool allow_special_tokens_in_content);

// The reply in `generated` (ids after the prompt): cut before the first stop id, decoded without
// special tokens, cut before the text of the assistant template's suffix if it still appears (a
// multi-token end of turn), and trimmed of surrounding whitespace.
std::string reply_text(const Tokenizer& tokenizer, const ChatRenderer& format,
                       const std::vector<int64_t>& generated, const std::vector<int64_t>& stop_ids);

// ---------------------------------------------------------------------------------------------
// Exact match

struct GenerationRecord {
  std::string path;
  int64_t line = 0;
  std::string prompt;     // rendered prompt text
  std::string reference;  // the last assistant message, trimmed
  std::string generated;  // the reply, trimmed
  bool match = false;
  int64_t prompt_tokens = 0, new_tokens = 0;
  bool stopped = false;  // ended on a stop id (else max_new_tokens or the context limit)
};

struct ExactMatchOptions {
  int64_t max_new_tokens = 256;
  int64_t limit = 0;  // samples to evaluate at most; <= 0: all
};

struct ExactMatchResult {
  int64_t total = 0, correct = 0;
  int64_t skipped = 0;  // invalid samples skipped (on_invalid_sample: skip)
  double accuracy = 0;  // correct / total (0 when total is 0)
  std::vector<GenerationRecord> records;
};

// Greedy exact match over the chat samples of `path` (JSONL in any of the pipeline's dataset
// formats; `text` samples are an InputError: they have no reference reply). Invalid lines follow
// the pipeline's on_invalid_sample (error: InputError "file:line: reason").
ExactMatchResult evaluate_exact_match(LlamaForCausalLM& model, const DataPipeline& pipeline, const std::string& path,
                                      const ExactMatchOptions& options);

}  // namespace ringtune
