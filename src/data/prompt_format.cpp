// Prompt formats: presets, template validation, `auto` for models without a chat template, and
// rendering of a conversation into text + tokenizer segments + supervised byte spans.
//
// How ringtune matches llmforge (the semantics of rayllm's PromptFormat.generate_prompt, which
// llmforge's `generation_config.prompt_format` documents):
// - bos + [system template] + each message through its template + [trailing_assistant].
// - The system message (or default_system_message when there is none and it is non-empty) is
//   rendered first with the system template, or, with system_in_user, into the first user
//   message's {system}; later user messages get an empty {system}.
// - strip_whitespace (default true) strips message content. llmforge strips with Python's
//   str.strip(); ringtune uses JavaScript's trim() set (see utf8.h), the set of the Llama 3 chat
//   template's `| trim` filter, so golden renderings from @huggingface/jinja match byte for byte.
//   The two sets differ only on U+001C..U+001F, U+0085 and U+FEFF. llmforge leaves the system
//   content unstripped when system_in_user; ringtune strips it there too.
// - trailing_assistant is inference only: it is appended when add_generation_prompt is set, never
//   to a training sample. Training text therefore ends with the last assistant template's suffix
//   (e.g. "<|eot_id|>"), and the loss is on the assistant content plus that suffix.
//
// How the presets relate to the Hugging Face chat templates: the Llama 3 template shipped in
// tokenizer_config.json trims content and *always* appends the assistant header, even after an
// assistant turn. ringtune's llama3 preset rendered with add_generation_prompt reproduces that
// template's output exactly for every valid conversation (tests/golden/chat_templates/llama3.json);
// without add_generation_prompt (training) the text stops at the last "<|eot_id|>", because a
// trailing header after the answer would teach nothing and is not part of the answer.
#include "src/data/prompt_format.h"

#include <cctype>

#include <algorithm>

#include "src/data/utf8.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Presets

const std::vector<std::string>& prompt_format_preset_names() {
  static const std::vector<std::string> names = {"llama3", "llama2", "mistral", "chatml", "none"};
  return names;
}

namespace {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

}  // namespace

PromptFormat prompt_format_preset(const std::string& name) {
  PromptFormat f;
  if (name == "llama3") {
    // llmforge's documented Meta-Llama-3 prompt_format, verbatim; Meta's model card layout.
    f.system = "<|start_header_id|>system<|end_header_id|>\n\n{instruction}<|eot_id|>";
    f.user = "<|start_header_id|>user<|end_header_id|>\n\n{instruction}<|eot_id|>";
    f.assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n{instruction}<|eot_id|>";
    f.trailing_assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    f.bos = "<|begin_of_text|>";
  } else if (name == "llama2") {
    // Meta's Llama 2 chat layout (llama/generation.py chat_completion):
    //   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
    // Every turn starts with <s>, so the user template carries it and `bos` stays empty: the first
    // user turn's <s> is the single bos at the start of the text.
    f.system = "<<SYS>>\n{instruction}\n<</SYS>>\n\n";
    f.user = "<s>[INST] {system}{instruction} [/INST]";
    f.assistant = " {instruction} </s>";
    f.system_in_user = true;
  } else if (name == "mistral") {
    // Mistral-7B-Instruct model card: <s>[INST] {user} [/INST]{assistant}</s>[INST] ...
    // Mistral has no system role; the system message is prepended to the first user message,
    // separated by a blank line (as Mistral's later chat templates do).
    f.system = "{instruction}\n\n";
    f.user = "[INST] {system}{instruction} [/INST]";
    f.assistant = "{instruction}</s>";
    f.bos = "<s>";
    f.system_in_user = true;
  } else if (name == "chatml") {
    // ChatML: <|im_start|>{role}\n{content}<|im_end|>\n, generation prompt <|im_start|>assistant\n.
    f.system = "<|im_start|>system\n{instruction}<|im_end|>\n";
    f.user = "<|im_start|>user\n{instruction}<|im_end|>\n";
    f.assistant = "<|im_start|>assistant\n{instruction}<|im_end|>\n";
    f.trailing_assistant = "<|im_start|>assistant\n";
  } else if (name == "none") {
    // Plain concatenation (llmforge's causal_lm example format); bos/eos come from the tokenizer
    // when the task is causal_lm.
    f.system = "{instruction}";
    f.user = "{instruction}";
    f.assistant = "{instruction}";
  } else {
    throw InputError("generation_config.prompt_format: unknown preset '" + name + "'; use one of " +
                     join(prompt_format_preset_names(), ", ") +
                     ", auto, or a mapping with system/user/assistant templates");
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// Template parsing and validation

namespace {

using Part = PromptRenderer::Part;

std::vector<Part> parse_template(const std::string& tmpl, const std::string& key) {
  std::vector<Part> parts;
  std::string literal;
  const auto flush = [&] {
    if (!literal.empty()) parts.push_back({Part::literal, std::move(literal)});
    literal.clear();
  };
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '{') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
        literal += '{';
        ++i;
        continue;
      }
      const size_t close = tmpl.find('}', i + 1);
      if (close == std::string::npos)
        throw InputError(key + ": '{' without a closing '}' (write {{ for a literal brace)");
      const std::string name = tmpl.substr(i + 1, close - i - 1);
      flush();
      if (name == "instruction") {
        parts.push_back({Part::instruction, {}});
      } else if (name == "system") {
        parts.push_back({Part::system, {}});
      } else {
        throw InputError(key + ": unknown placeholder " + quote_for_error("{" + name + "}") +
                         "; only {instruction} and {system} are replaced (write {{ and }} for literal braces)");
      }
      i = close;
    } else if (c == '}') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
        literal += '}';
        ++i;
        continue;
      }
      throw InputError(key + ": single '}' (write }} for a literal brace)");
    } else {
      literal += c;
    }
  }
  flush();
  return parts;
}

size_t count_kind(const std::vector<Part>& parts, Part::Kind kind) {
  return static_cast<size_t>(
      std::count_if(parts.begin(), parts.end(), [&](const Part& p) { return p.kind == kind; }));
}

// Parses and checks one of system/user/assistant.
std::vector<Part> checked_template(const PromptFormat& f, const std::string& where,
                                   const std::string& name) {
  const std::string& tmpl = name == "system" ? f.system : name == "user" ? f.user : f.assistant;
  const std::string key = where + "." + name;
  std::vector<Part> parts = parse_template(tmpl, key);
  const size_t n_instruction = count_kind(parts, Part::instruction);
  if (n_instruction == 0)
    throw InputError(key + ": the template must contain {instruction} (where the message goes), got " +
                     quote_for_error(tmpl, 60));
  if (n_instruction > 1) throw InputError(key + ": {instruction} must appear exactly once");
  const size_t n_system = count_kind(parts, Part::system);
  if (name == "user" && f.system_in_user) {
    if (n_system == 0)
      throw InputError(key + ": must contain {system} because system_in_user is true");
    if (n_system > 1) throw InputError(key + ": {system} must appear exactly once");
  } else if (n_system > 0) {
    throw InputError(key + ": {system} is only allowed in " + where +
                     ".user, and only with system_in_user: true");
  }
  return parts;
}

}  // namespace

void validate_prompt_format(const PromptFormat& format, const std::string& where) {
  PromptRenderer renderer(format, where);
  (void)renderer;
}

PromptRenderer::PromptRenderer(PromptFormat format, const std::string& where, std::string name)
    : format_(std::move(format)), name_(std::move(name)) {
  system_ = checked_template(format_, where, "system");
  user_ = checked_template(format_, where, "user");
  assistant_ = checked_template(format_, where, "assistant");
  for (const auto* s : {&format_.bos, &format_.trailing_assistant, &format_.default_system_message})
    if (first_invalid_utf8(*s) >= 0) {
      const char* key = s == &format_.bos ? "bos"
                        : s == &format_.trailing_assistant ? "trailing_assistant"
                                                           : "default_system_message";
      throw InputError(where + "." + key + ": not valid UTF-8");
    }
  for (const auto* parts : {&system_, &user_, &assistant_})
    for (const Part& p : *parts)
      if (first_invalid_utf8(p.text) >= 0)
        throw InputError(where + ": a template is not valid UTF-8");
}

// ---------------------------------------------------------------------------------------------
// auto without a chat template

std::string preset_from_model_id(const std::string& model_id) {
  std::string id;
  for (const char ch : model_id) id += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const auto has = [&](const char* s) { return id.find(s) != std::string::npos; };
  if (has("llama-3") || has("llama3")) return "llama3";
  if (has("llama-2") || has("llama2")) return "llama2";
  if (has("mistral") || has("mixtral")) return "mistral";
  if (has("qwen")) return "chatml";
  return "";
}

std::string preset_from_vocabulary(const std::string& model_dir, const Tokenizer* tokenizer) {
  const auto cannot_tell = [&](const std::string& why) {
    return InputError("generation_config.prompt_format: auto cannot tell the prompt format of " + model_dir +
                      " (" + why + "); set it to one of " + join(prompt_format_preset_names(), ", ") +
                      ", give system/user/assistant templates, or give a chat_template");
  };
  if (tokenizer == nullptr) throw cannot_tell("no chat template");
  const auto has = [&](const char* s) { return tokenizer->token_to_id(s).has_value(); };
  std::vector<std::string> found;
  if (has("<|start_header_id|>") && has("<|eot_id|>")) found.push_back("llama3");
  if (has("<|im_start|>") && has("<|im_end|>")) found.push_back("chatml");
  if (has("[INST]") && has("[/INST]")) found.push_back("mistral");
  if (found.size() == 1) return found[0];
  if (found.empty()) throw cannot_tell("no chat template, and its vocabulary has no chat tokens");
  throw cannot_tell("no chat template, and its vocabulary has tokens of " + join(found, " and "));
}

// ---------------------------------------------------------------------------------------------
// train_on

TrainOn parse_train_on(const std::string& value) {
  if (value == "assistant") return TrainOn::assistant;
  if (value == "last_assistant") return TrainOn::last_assistant;
  if (value == "all") return TrainOn::all;
  throw InputError("train_on: " + quote_for_error(value) + " is not one of assistant, last_assistant, all");
}

const char* train_on_name(TrainOn value) {
  switch (value) {
    case TrainOn::assistant: return "assistant";
    case TrainOn::last_assistant: return "last_assistant";
    case TrainOn::all: return "all";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Rendering

std::vector<TextSegment> RenderedPrompt::segments() const {
  std::vector<TextSegment> out;
  out.reserve(pieces.size());
  const std::string_view all(text);
  for (const Piece& p : pieces)
    out.push_back({all.substr(static_cast<size_t>(p.begin), static_cast<size_t>(p.end - p.begin)),
                   p.allow_special});
  return out;
}

namespace {

class Builder {
 public:
  explicit Builder(bool content_special) : content_special_(content_special) {}

  void literal(std::string_view s) { append(s, true, false); }
  void content(std::string_view s) { append(s, content_special_, true); }
  int64_t size() const { return static_cast<int64_t>(out_.text.size()); }
  RenderedPrompt& result() { return out_; }

  // Expands a template; `system` is called where {system} stands.
  template <typename SystemFn>
  void expand(const std::vector<Part>& parts, std::string_view instruction, SystemFn&& system) {
    for (const Part& p : parts) {
      if (p.kind == Part::literal) literal(p.text);
      else if (p.kind == Part::instruction) content(instruction);
      else system();
    }
  }

 private:
  void append(std::string_view s, bool allow_special, bool is_content) {
    if (s.empty()) return;
    const int64_t begin = size();
    out_.text.append(s);
    auto& pieces = out_.pieces;
    if (!pieces.empty() && !is_content && !pieces.back().is_content &&
        pieces.back().allow_special == allow_special) {
      pieces.back().end = size();  // merge neighbouring template text
    } else {
      pieces.push_back({begin, size(), allow_special, is_content});
    }
  }

  bool content_special_;
  RenderedPrompt out_;
};

}  // namespace

RenderedPrompt PromptRenderer::render(const Conversation& conversation,
                                      const RenderOptions& options) const {
  const PromptFormat& f = format_;
  const auto prepare = [&](std::string_view s) { return f.strip_whitespace ? trim_whitespace(s) : s; };

  // The one system message, or the default.
  std::ptrdiff_t system_index = -1;
  for (size_t i = 0; i < conversation.size(); ++i) {
    if (conversation[i].role != Role::system) continue;
    if (system_index >= 0)
      throw InvalidSample("multiple_system",
                          "messages[" + std::to_string(i) + "]: a second system message (only one is allowed)");
    system_index = static_cast<std::ptrdiff_t>(i);
  }
  std::string_view system_content;
  if (system_index >= 0) system_content = conversation[static_cast<size_t>(system_index)].content;
  else system_content = f.default_system_message;
  system_content = prepare(system_content);
  bool system_pending = !system_content.empty();

  std::ptrdiff_t last_assistant = -1;
  for (size_t i = 0; i < conversation.size(); ++i)
    if (conversation[i].role == Role::assistant) last_assistant = static_cast<std::ptrdiff_t>(i);

  Builder b(options.allow_special_tokens_in_content);
  const auto no_system = [] {};
  const auto render_system = [&] { b.expand(system_, system_content, no_system); };

  b.literal(f.bos);
  const int64_t after_bos = b.size();
  if (system_pending && !f.system_in_user) {
    render_system();
    system_pending = false;
  }
  std::vector<ByteSpan> spans;
  for (size_t i = 0; i < conversation.size(); ++i) {
    const Message& m = conversation[i];
    const std::string_view content = prepare(m.content);
    switch (m.role) {
      case Role::system:
        break;
      case Role::tool:
        throw InvalidSample("tool_role_unsupported",
                            "message " + std::to_string(i) + " is a tool result, which a prompt format of system, user "
                            "and assistant templates cannot render; use the model's chat template "
                            "(generation_config.prompt_format: auto) or set chat_template");
      case Role::user:
        b.expand(user_, content, [&] {
          if (system_pending) render_system();
          system_pending = false;
        });
        system_pending = false;  // only the first user message carries {system}
        break;
      case Role::assistant: {
        // The span runs from the content to the end of the template: content + end of turn.
        int64_t content_begin = -1;
        for (const Part& p : assistant_) {
          if (p.kind == Part::instruction) content_begin = b.size();
          if (p.kind == Part::literal) b.literal(p.text);
          else b.content(content);
        }
        const bool supervise = (options.train_on == TrainOn::assistant ||
                                (options.train_on == TrainOn::last_assistant &&
                                 static_cast<std::ptrdiff_t>(i) == last_assistant)) &&
                               m.trained;
        if (supervise && b.size() > content_begin) spans.push_back({content_begin, b.size()});
        break;
      }
    }
  }
  if (options.add_generation_prompt) b.literal(f.trailing_assistant);

  RenderedPrompt out = std::move(b.result());
  if (options.train_on == TrainOn::all) {
    if (out.text.size() > static_cast<size_t>(after_bos))
      spans = {{after_bos, static_cast<int64_t>(out.text.size())}};
    else
      spans.clear();
  }
  out.supervised = std::move(spans);
  return out;
}

// ---------------------------------------------------------------------------------------------
// End of turn, description, fingerprint

std::string PromptRenderer::reply_suffix() const {
  const std::string& t = format_.assistant;
  const size_t pos = t.rfind("{instruction}");
  if (pos == std::string::npos) return "";
  std::string tail = t.substr(pos + 13), out;
  for (size_t i = 0; i < tail.size(); ++i) {
    out += tail[i];
    if ((tail[i] == '{' || tail[i] == '}') && i + 1 < tail.size() && tail[i + 1] == tail[i]) ++i;
  }
  return std::string(trim_whitespace(out));
}

std::vector<int32_t> PromptRenderer::turn_end_ids(const Tokenizer& tokenizer) const {
  const std::string suffix = reply_suffix();
  if (suffix.empty()) return {};
  if (auto id = tokenizer.token_to_id(suffix)) return {*id};
  const auto enc = tokenizer.encode(suffix, true);
  if (enc.size() == 1) return {enc[0]};
  return {};
}

std::string PromptRenderer::describe() const {
  return name_ == "custom" ? "the prompt_format map of the config" : "preset " + name_;
}

std::string PromptRenderer::fingerprint() const {
  std::string f = "llmforge\x1f";
  for (const std::string* s : {&format_.system, &format_.user, &format_.assistant, &format_.trailing_assistant,
                               &format_.bos, &format_.default_system_message})
    f += *s + "\x1f";
  f += format_.system_in_user ? "1" : "0";
  f += format_.strip_whitespace ? "1" : "0";
  return f;
}

}  // namespace ringtune
