// Prompt formats: Anyscale llmforge's `generation_config.prompt_format` (templates with
// {instruction} and {system}), the named presets llama3 | llama2 | mistral | chatml | none, `auto`
// resolution from a model directory, and rendering of a conversation into text, tokenizer
// segments and the byte spans that carry loss.
// defines: PromptFormat, prompt_format_preset, validate_prompt_format, resolve_prompt_format,
//          TrainOn, RenderOptions, RenderedPrompt, PromptRenderer
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

// The preset a model directory unambiguously asks for: from tokenizer_config.json's
// chat_template (or chat_template.jinja), else from the tokenizer's vocabulary (pass nullptr to
// skip that). Throws InputError asking the user to choose when it cannot tell.
std::string detect_prompt_format_preset(const std::string& model_dir, const Tokenizer* tokenizer);

// `name` is a preset name or "auto" (then model_dir/tokenizer decide, as above).
PromptFormat resolve_prompt_format(const std::string& name, const std::string& model_dir,
                                   const Tokenizer* tokenizer);

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

// A validated, pre-parsed PromptFormat. Rendering follows llmforge's PromptFormat.generate_prompt:
// bos, then the system template (unless system_in_user, or the system content is empty), then
// each message through its template (the system template filled with the system content goes
// into the first user message's {system} when system_in_user; later user messages get ""), then
// trailing_assistant only when add_generation_prompt.
class PromptRenderer {
 public:
  explicit PromptRenderer(PromptFormat format,
                          const std::string& where = "generation_config.prompt_format");

  // Throws InvalidSample for a second system message; message order is not checked here (see
  // validate_conversation).
  RenderedPrompt render(const Conversation& conversation, const RenderOptions& options) const;

  const PromptFormat& format() const { return format_; }

  // Internal: a template split at its placeholders.
  struct Part {
    enum Kind { literal, instruction, system } kind = literal;
    std::string text;
  };

 private:
  PromptFormat format_;
  std::vector<Part> system_, user_, assistant_;
};

}  // namespace ringtune
