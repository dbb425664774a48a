// Jinja chat templates as prompt formats; see chat_template.h.
#include "src/data/chat_template.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/error.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

fs::path config_dir(const std::string& dir) {
  const fs::path p(dir);
  return fs::is_directory(p) ? p : p.parent_path();
}

nlohmann::json read_tokenizer_config(const fs::path& file) {
  std::ifstream in(file);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

std::optional<ChatTemplateSource> read_chat_template(const std::string& dir) {
  const fs::path base = config_dir(dir);
  const fs::path config = base / "tokenizer_config.json";
  if (fs::exists(config)) {
    const nlohmann::json j = read_tokenizer_config(config);
    if (j.is_object() && j.contains("chat_template")) {
      const auto& t = j["chat_template"];
      const std::string where = config.string() + ": chat_template";
      if (t.is_string()) return ChatTemplateSource{t.get<std::string>(), where};
      if (t.is_array())
        for (const auto& entry : t)
          if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
              entry["template"].is_string())
            return ChatTemplateSource{entry["template"].get<std::string>(), where + " (default)"};
    }
  }
  const fs::path jinja = base / "chat_template.jinja";
  if (fs::exists(jinja)) {
    std::ifstream in(jinja);
    std::stringstream ss;
    ss << in.rdbuf();
    return ChatTemplateSource{ss.str(), jinja.string()};
  }
  return std::nullopt;
}

jinja::Dict chat_template_special_tokens(const std::string& dir, const Tokenizer& tokenizer) {
  const fs::path config = config_dir(dir) / "tokenizer_config.json";
  jinja::Dict out;
  const nlohmann::json j = fs::exists(config) ? read_tokenizer_config(config) : nlohmann::json::object();
  const SpecialTokenIds& ids = tokenizer.special_ids();
  for (const auto& [key, id] : {std::pair<const char*, int32_t>{"bos_token", ids.bos}, {"eos_token", ids.eos},
                                {"unk_token", ids.unk}})
    if (id >= 0 && !(j.is_object() && j.contains(key))) out.emplace_back(key, jinja::Value(tokenizer.id_to_piece(id)));
  if (!j.is_object()) return out;
  const auto content = [](const nlohmann::json& v) -> std::optional<std::string> {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return std::nullopt;
  };
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
    if (j.contains(key))
      if (auto s = content(j[key])) out.emplace_back(key, jinja::Value(*s));
  if (j.contains("additional_special_tokens") && j["additional_special_tokens"].is_array()) {
    jinja::List list;
    for (const auto& v : j["additional_special_tokens"])
      if (auto s = content(v)) list.emplace_back(*s);
    out.emplace_back("additional_special_tokens", jinja::Value(std::move(list)));
  }
  return out;
}

jinja::Template parse_chat_template(const ChatTemplateSource& source) {
  try {
    return jinja::Template::parse(source.text);
  } catch (const jinja::TemplateError& e) {
    throw InputError(source.where + " " + std::to_string(e.where().line) + ":" + std::to_string(e.where().column) + ": " +
                     e.what());
  }
}

ChatTemplateRenderer::ChatTemplateRenderer(ChatTemplateSource source, jinja::Dict variables, const Tokenizer& tokenizer)
    : source_(std::move(source)), template_(parse_chat_template(source_)), variables_(std::move(variables)),
      tokenizer_(tokenizer) {
  for (const auto& [k, v] : variables_)
    if (k == "bos_token" && v.is_string()) bos_text_ = v.as_string();
}

jinja::RenderResult ChatTemplateRenderer::run(const Conversation& conversation, bool add_generation_prompt) const {
  jinja::List messages;
  for (size_t i = 0; i < conversation.size(); ++i)
    messages.emplace_back(jinja::Dict{{"role", jinja::Value(role_name(conversation[i].role))},
                                      {"content", jinja::Value(jinja::TString(conversation[i].content, static_cast<int32_t>(i)))}});
  jinja::Dict ctx = {{"messages", jinja::Value(std::move(messages))},
                     {"tools", jinja::Value::none()},
                     {"documents", jinja::Value::none()},
                     {"add_generation_prompt", jinja::Value(add_generation_prompt)}};
  for (const auto& kv : variables_) ctx.push_back(kv);
  try {
    return template_.render(ctx);
  } catch (const jinja::TemplateRaised& e) {
    throw InvalidSample("chat_template_raised", std::string("the chat template raised: ") + e.what());
  } catch (const jinja::TemplateError& e) {
    throw InvalidSample("chat_template_error", "the chat template failed at " + std::to_string(e.where().line) + ":" +
                                                   std::to_string(e.where().column) + ": " + e.what());
  }
}

size_t ChatTemplateRenderer::turn_end(const jinja::TString& text, size_t pos) const {
  const std::string& s = text.str();
  size_t q = pos;
  while (q < s.size() && ascii_space(s[q]) && text.origin_at(q) == jinja::kTemplateOrigin) ++q;
  if (q >= s.size() || text.origin_at(q) != jinja::kTemplateOrigin) return pos;
  size_t run_end = q;
  while (run_end < s.size() && text.origin_at(run_end) == jinja::kTemplateOrigin) ++run_end;
  const Encoding enc = tokenizer_.encode(std::vector<TextSegment>{{std::string_view(s).substr(q, run_end - q), true}});
  if (enc.ids.empty() || !tokenizer_.is_special(enc.ids[0])) return pos;
  const size_t len = enc.offsets.size() > 1 ? static_cast<size_t>(enc.offsets[1]) : run_end - q;
  return q + len;
}

RenderedPrompt ChatTemplateRenderer::render(const Conversation& conversation, const RenderOptions& options) const {
  const jinja::RenderResult r = run(conversation, options.add_generation_prompt);
  const jinja::TString& t = r.text;
  RenderedPrompt out;
  out.text = t.str();
  const int64_t size = static_cast<int64_t>(out.text.size());

  // Template text may spell special tokens; message content only when allowed.
  int64_t pos = 0;
  for (const auto& sp : t.spans()) {
    if (sp.begin > pos) out.pieces.push_back({pos, static_cast<int64_t>(sp.begin), true, false});
    out.pieces.push_back({static_cast<int64_t>(sp.begin), static_cast<int64_t>(sp.end),
                          options.allow_special_tokens_in_content, true});
    pos = sp.end;
  }
  if (pos < size) out.pieces.push_back({pos, size, true, false});

  if (options.train_on == TrainOn::all) {
    const int64_t begin = !bos_text_.empty() && out.text.rfind(bos_text_, 0) == 0 ? static_cast<int64_t>(bos_text_.size()) : 0;
    if (begin < size) out.supervised.push_back({begin, size});
    return out;
  }
  std::vector<size_t> assistants;
  for (size_t i = 0; i < conversation.size(); ++i)
    if (conversation[i].role == Role::assistant) assistants.push_back(i);
  const size_t first_selected = options.train_on == TrainOn::last_assistant && !assistants.empty() ? assistants.size() - 1 : 0;

  if (template_.uses_generation_blocks()) {  // TRL's convention marks the assistant output itself
    if (r.generation.size() != assistants.size())
      throw InvalidSample("chat_template_generation",
                          "the chat template's {% generation %} blocks cover " + std::to_string(r.generation.size()) +
                              " replies, the conversation has " + std::to_string(assistants.size()) +
                              " assistant messages");
    for (size_t k = first_selected; k < r.generation.size(); ++k)
      if (r.generation[k].second > r.generation[k].first && conversation[assistants[k]].trained)
        out.supervised.push_back({static_cast<int64_t>(r.generation[k].first), static_cast<int64_t>(r.generation[k].second)});
    return out;
  }

  for (size_t k = first_selected; k < assistants.size(); ++k) {
    const int32_t origin = static_cast<int32_t>(assistants[k]);
    size_t first = std::string::npos, last = 0;
    for (const auto& sp : t.spans())
      if (sp.origin == origin) {
        first = std::min<size_t>(first, sp.begin);
        last = std::max<size_t>(last, sp.end);
      }
    if (first == std::string::npos)
      throw InvalidSample("chat_template_drops_content",
                          "messages[" + std::to_string(assistants[k]) +
                              "]: the chat template does not write this assistant message's content, so the loss "
                              "cannot be placed on it");
    out.supervised.push_back({static_cast<int64_t>(first), static_cast<int64_t>(turn_end(t, last))});
  }
  // An earlier turn must render as it does when it is the last one, or training teaches text the
  // model never writes (templates that drop the reasoning of earlier turns).
  if (options.train_on == TrainOn::assistant) {
    for (size_t k = 0; k + 1 < assistants.size(); ++k) {
      const size_t end = static_cast<size_t>(out.supervised[k].end);
      const Conversation prefix(conversation.begin(), conversation.begin() + static_cast<std::ptrdiff_t>(assistants[k] + 1));
      const std::string alone = run(prefix, false).text.str();
      if (alone.size() < end || out.text.compare(0, end, alone, 0, end) != 0)
        throw InvalidSample("chat_template_rewrites_turns",
                            "messages[" + std::to_string(assistants[k]) +
                                "]: the chat template renders this assistant turn differently once later turns follow "
                                "(it rewrites earlier turns, e.g. drops their reasoning), so train_on: assistant would "
                                "teach text the model never writes; use train_on: last_assistant");
    }
  }
  // Replies with OpenAI's "weight": 0 stay in the text without loss (after the check above, whose
  // spans are indexed by reply).
  std::vector<ByteSpan> trained;
  for (size_t k = first_selected; k < assistants.size(); ++k)
    if (conversation[assistants[k]].trained) trained.push_back(out.supervised[k - first_selected]);
  out.supervised = std::move(trained);
  return out;
}

std::vector<int32_t> ChatTemplateRenderer::turn_end_ids(const Tokenizer& tokenizer) const {
  const Conversation probe = {{Role::user, "Hi"}, {Role::assistant, "Hello"}};
  try {
    const jinja::TString t = run(probe, false).text;
    size_t last = 0;
    bool found = false;
    for (const auto& sp : t.spans())
      if (sp.origin == 1) {
        last = sp.end;
        found = true;
      }
    if (!found) return {};
    const size_t end = turn_end(t, last);
    if (end == last) return {};
    size_t q = last;
    while (q < end && ascii_space(t.str()[q])) ++q;
    const auto ids = tokenizer.encode(std::string_view(t.str()).substr(q, end - q), true);
    if (ids.size() == 1) return {ids[0]};
  } catch (const InvalidSample&) {
  }
  return {};
}

bool ChatTemplateRenderer::writes_bos() const {
  if (bos_text_.empty()) return false;
  try {
    return run({{Role::user, "Hi"}, {Role::assistant, "Hello"}}, false).text.str().rfind(bos_text_, 0) == 0;
  } catch (const InvalidSample&) {
    return false;
  }
}

std::string ChatTemplateRenderer::describe() const { return "the chat template of " + source_.where; }

std::string ChatTemplateRenderer::fingerprint() const {
  std::string f = "jinja\x1f" + source_.text + "\x1f";
  for (const auto& [k, v] : variables_) f += k + "=" + v.repr() + "\x1f";
  return f;
}

}  // namespace ringtune
