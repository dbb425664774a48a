// A model's own Jinja chat template as ringtune's prompt format: rendered exactly as transformers'
// apply_chat_template renders it (src/template/), with the context transformers passes (messages,
// tools = None, documents = None, add_generation_prompt, the special tokens of
// tokenizer_config.json, chat_template_kwargs), and turned into tokenizer segments and loss spans:
//   - every output byte knows whether it is template text or the content of message k (the
//     engine's TString origins), so template text is tokenized with special-token parsing and
//     message content without it unless allow_special_tokens_in_content (no injection);
//   - the loss goes on each assistant message's content and the end-of-turn token the template
//     writes right after it (a special token after optional whitespace: <|eot_id|>, <|im_end|>,
//     <end_of_turn>, </s>, ...), or on the template's {% generation %} blocks when it has them;
//     the assistant header never carries loss;
//   - with train_on: assistant, each earlier assistant turn must render the same once later turns
//     follow (templates such as Qwen3's rewrite earlier turns); otherwise the sample is refused
//     with a pointer to train_on: last_assistant;
//   - raise_exception in the template (e.g. "roles must alternate") and runtime errors make the
//     sample invalid ("the chat template raised: ..."), handled by on_invalid_sample.
// defines: ChatTemplateSource, read_chat_template, chat_template_special_tokens, parse_chat_template,
//          ChatTemplateRenderer
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/data/prompt_format.h"
#include "src/template/template.h"

namespace ringtune {

struct ChatTemplateSource {
  std::string text;   // the Jinja source
  std::string where;  // names it in messages: "DIR/tokenizer_config.json: chat_template"
};

// dir's template: tokenizer_config.json "chat_template" (a string, or the "default" entry of a
// list of named templates), else chat_template.jinja beside it. nullopt when it has none;
// InputError for a tokenizer_config.json that is not JSON.
std::optional<ChatTemplateSource> read_chat_template(const std::string& dir);

// The special tokens of dir/tokenizer_config.json as transformers passes them to templates:
// bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token (strings or
// AddedToken objects) and additional_special_tokens. bos_token, eos_token and unk_token that
// the file does not mention (or all three, without the file) are the tokenizer's own, as
// transformers' LlamaTokenizer defaults them for a bare tokenizer.model; a key the file sets to
// null stays unset.
jinja::Dict chat_template_special_tokens(const std::string& dir, const Tokenizer& tokenizer);

// The parsed template; InputError "<where> L:C: reason" when it does not parse.
jinja::Template parse_chat_template(const ChatTemplateSource& source);

class ChatTemplateRenderer : public ChatRenderer {
 public:
  // `variables`: the special tokens and chat_template_kwargs. `tokenizer` finds the end-of-turn
  // token after assistant replies and must outlive the renderer. InputError
  // "<where> L:C: reason" for a template that does not parse.
  ChatTemplateRenderer(ChatTemplateSource source, jinja::Dict variables, const Tokenizer& tokenizer);

  RenderedPrompt render(const Conversation& conversation, const RenderOptions& options) const override;
  std::vector<int32_t> turn_end_ids(const Tokenizer& tokenizer) const override;
  bool writes_bos() const override;
  std::string describe() const override;
  std::string fingerprint() const override;

 private:
  // InvalidSample when the template raises or fails for this conversation.
  jinja::RenderResult run(const Conversation& conversation, bool add_generation_prompt) const;
  // The end of the end-of-turn token that follows byte `pos` (after whitespace), or `pos`.
  size_t turn_end(const jinja::TString& text, size_t pos) const;

  ChatTemplateSource source_;
  jinja::Template template_;
  jinja::Dict variables_;
  const Tokenizer& tokenizer_;
  std::string bos_text_;
};

}  // namespace ringtune
