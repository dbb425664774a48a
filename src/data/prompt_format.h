// Prompt formats: Anyscale llmforge's `generation_config.prompt_format` (templates with
// {instruction} and {system}), the named presets llama3 | llama2 | mistral | chatml | none, the
// preset `auto` picks for a model without a chat template, and rendering of a conversation into text, tokenizer
// segments and the byte spans that carry loss.
// defines: PromptFormat, prompt_format_preset, validate_prompt_format, preset_from_vocabulary,
//          preset_from_model_id,
//          TrainOn, RenderOptions, RenderedPrompt, ChatRenderer, PromptRenderer
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/data/conversation.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// The format

// Field names and meanings are llmforge's. `system`, `user` and `assistant` each hold exactly one
// {instruction}; `user` holds exactly one {system} when system_in_user is true (and none
// otherwise). As in Python's str.format, "{{" and "}}" in those three templates stand for literal
// braces; `bos` and `trailing_assistant` are used verbatim.
struct PromptFormat {
  std::string system;
  std::string user;
  std::string assistant;
  std::string trailing_assistant;  // inference only: appended when the model is to answer
  std::string bos;                 // placed once at the start of the text
  bool system_in_user = false;     // the system template goes into the first user message
  std::string default_system_message;  // used when a conversation has none, if non-empty
  // Strip leading/trailing whitespace from message content (llmforge's default, and what the
  // Llama 3 chat template's `| trim` does). See trim_whitespace() for the exact set.
  bool strip_whitespace = true;
};

// Names accepted by prompt_format_preset (not "auto", which needs a model directory).
const std::vector<std::string>& prompt_format_preset_names();

// llama3 | llama2 | mistral | chatml | none. Throws InputError listing the names otherwise.
PromptFormat prompt_format_preset(const std::string& name);

// Checks the templates; throws InputError "<where>.<key>: <reason>" naming the offending key.
void validate_prompt_format(const PromptFormat& format,
                            const std::string& where = "generation_config.prompt_format");

// The preset of a model family named by an llmforge model_id ("meta-llama/Llama-2-7b-hf" -> llama2,
// Llama 3 -> llama3, Mistral/Mixtral -> mistral, Qwen -> chatml); "" when it names none.
std::string preset_from_model_id(const std::string& model_id);

// `auto` for a model without a chat template (one with a template renders it: ChatTemplateRenderer):
// the preset whose chat tokens the tokenizer's vocabulary has, when exactly one matches. Throws
// InputError asking the user to choose otherwise (or when tokenizer is nullptr).
std::string preset_from_vocabulary(const std::string& model_dir, const Tokenizer* tokenizer);

// ---------------------------------------------------------------------------------------------
// Rendering

enum class TrainOn {
  assistant,       // every assistant message's content plus its template suffix (end of turn)
  last_assistant,  // only the final assistant message's
  all,             // everything after the bos
};
TrainOn parse_train_on(const std::string& value);  // throws InputError naming `train_on`
const char* train_on_name(TrainOn value);

struct ByteSpan {
  int64_t begin = 0;
  int64_t end = 0;  // exclusive
};

struct RenderOptions {
  TrainOn train_on = TrainOn::assistant;
  // Message content may spell special tokens that become their ids (off: encoded as plain text).
  bool allow_special_tokens_in_content = false;
  // Append trailing_assistant after the conversation (inference: the model writes the answer).
  bool add_generation_prompt = false;
};

struct RenderedPrompt {
  struct Piece {
    int64_t begin = 0, end = 0;
    bool allow_special = false;
    bool is_content = false;  // message content (else template text or bos)
  };
  std::string text;
  std::vector<Piece> pieces;        // consecutive, covering `text`
  std::vector<ByteSpan> supervised;  // sorted, disjoint, non-empty

  // The pieces as tokenizer segments; they view into `text`, so keep this object alive and
  // unchanged while they are used.
  std::vector<TextSegment> segments() const;
};

// How conversations become text, ids and loss spans: an llmforge prompt format or preset
// (PromptRenderer, below) or a model's Jinja chat template (ChatTemplateRenderer,
// src/data/chat_template.h). Training, prepare, render, eval and generate all go through one.
class ChatRenderer {
 public:
  virtual ~ChatRenderer() = default;
  // Throws InvalidSample for a conversation the format cannot render.
  virtual RenderedPrompt render(const Conversation& conversation, const RenderOptions& options) const = 0;
  // The format's own end-of-turn token(s) after an assistant reply (<|eot_id|>, <|im_end|>, </s>,
  // <end_of_turn>): generation stops there and training supervises them. Empty when the format
  // writes none as a single token.
  virtual std::vector<int32_t> turn_end_ids(const Tokenizer& tokenizer) const = 0;
  // Template text after a reply that may survive decoding (a multi-token suffix): cut from
  // generated replies. Empty for none.
  virtual std::string reply_suffix() const { return {}; }
  // The format writes the BOS itself (task causal_lm adds the tokenizer's otherwise).
  virtual bool writes_bos() const = 0;
  // One line for logs and `render`: which format, from where.
  virtual std::string describe() const = 0;
  // Everything that decides the rendering, for the prepared-data cache key.
  virtual std::string fingerprint() const = 0;
};

// A validated, pre-parsed PromptFormat. Rendering follows llmforge's PromptFormat.generate_prompt:
// bos, then the system template (unless system_in_user, or the system content is empty), then
// each message through its template (the system template filled with the system content goes
// into the first user message's {system} when system_in_user; later user messages get ""), then
// trailing_assistant only when add_generation_prompt.
class PromptRenderer : public ChatRenderer {
 public:
  // `name`: the preset's name, or "custom" for an llmforge map (for describe()).
  explicit PromptRenderer(PromptFormat format,
                          const std::string& where = "generation_config.prompt_format",
                          std::string name = "custom");

  // Throws InvalidSample for a second system message; message order is not checked here (see
  // validate_conversation).
  RenderedPrompt render(const Conversation& conversation, const RenderOptions& options) const override;
  // The assistant template's text after {instruction}, trimmed, when it is one token.
  std::vector<int32_t> turn_end_ids(const Tokenizer& tokenizer) const override;
  std::string reply_suffix() const override;
  bool writes_bos() const override { return !format_.bos.empty(); }
  std::string describe() const override;
  std::string fingerprint() const override;

  const PromptFormat& format() const { return format_; }

  // Internal: a template split at its placeholders.
  struct Part {
    enum Kind { literal, instruction, system } kind = literal;
    std::string text;
  };

 private:
  PromptFormat format_;
  std::string name_;
  std::vector<Part> system_, user_, assistant_;
};

}  // namespace ringtune
