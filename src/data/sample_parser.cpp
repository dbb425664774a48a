// JSONL sample parsing: the dataset formats, their detection, and per-key validation.
//
// Rules (llmforge's, plus role order and types):
// - each line is one JSON object, valid UTF-8 (checked by the dataset reader before parsing);
// - required keys are present with the right JSON type; unknown extra keys are ignored;
// - every message's content is a non-empty, non-whitespace string; roles are known;
// - conversations: optional system first, then user/assistant alternating from user, ending with
//   assistant for training (see validate_conversation).
#include "src/data/sample_parser.h"

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/data/utf8.h"

namespace ringtune {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Names

DatasetFormat parse_dataset_format(const std::string& value) {
  if (value == "auto") return DatasetFormat::auto_detect;
  if (value == "openai") return DatasetFormat::openai;
  if (value == "sharegpt") return DatasetFormat::sharegpt;
  if (value == "alpaca") return DatasetFormat::alpaca;
  if (value == "text") return DatasetFormat::text;
  if (value == "prompt_completion") return DatasetFormat::prompt_completion;
  throw InputError("dataset_format: " + quote_for_error(value) +
                   " is not one of auto, openai, sharegpt, alpaca, text, prompt_completion");
}

const char* dataset_format_name(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::auto_detect: return "auto";
    case DatasetFormat::openai: return "openai";
    case DatasetFormat::sharegpt: return "sharegpt";
    case DatasetFormat::alpaca: return "alpaca";
    case DatasetFormat::text: return "text";
    case DatasetFormat::prompt_completion: return "prompt_completion";
  }
  return "?";
}

namespace {

// ---------------------------------------------------------------------------------------------
// Detection

// The key of a chat format: conversation_column when set, else "messages" (OpenAI) or
// "conversations" (ShareGPT).
std::string chat_key(DatasetFormat f, const std::string& column) {
  if (!column.empty()) return column;
  return f == DatasetFormat::sharegpt ? "conversations" : "messages";
}

std::string format_keys(DatasetFormat f, const std::string& column, const AlpacaColumns& alpaca = {}) {
  switch (f) {
    case DatasetFormat::openai:
    case DatasetFormat::sharegpt: return "\"" + chat_key(f, column) + "\"";
    case DatasetFormat::alpaca: return "\"" + alpaca.instruction + "\"/\"" + alpaca.output + "\"";
    case DatasetFormat::text: return "\"text\"";
    case DatasetFormat::prompt_completion: return "\"prompt\"/\"completion\"";
    default: return "";
  }
}

// How the messages of a conversation column are written: `style` when given, else ShareGPT
// when the first message has "from" or "value", OpenAI otherwise.
DatasetFormat style_of(const json& messages, DatasetFormat style) {
  if (style != DatasetFormat::auto_detect) return style;
  if (messages.is_array() && !messages.empty() && messages[0].is_object() &&
      (messages[0].contains("from") || messages[0].contains("value")))
    return DatasetFormat::sharegpt;
  return DatasetFormat::openai;
}

// The formats whose key the object has.
std::vector<DatasetFormat> formats_of(const json& obj, const std::string& column, DatasetFormat style,
                                      const AlpacaColumns& alpaca) {
  std::vector<DatasetFormat> out;
  if (!column.empty()) {
    if (obj.contains(column)) out.push_back(style_of(obj[column], style));
  } else {
    if (obj.contains("messages")) out.push_back(DatasetFormat::openai);
    if (obj.contains("conversations")) out.push_back(DatasetFormat::sharegpt);
  }
  if (obj.contains(alpaca.instruction) || obj.contains(alpaca.output)) out.push_back(DatasetFormat::alpaca);
  if (obj.contains("text")) out.push_back(DatasetFormat::text);
  // Both keys: UltraChat-style records carry a "prompt" beside their "messages".
  if (obj.contains("prompt") && obj.contains("completion")) out.push_back(DatasetFormat::prompt_completion);
  return out;
}

std::string describe_formats(const std::vector<DatasetFormat>& formats, const std::string& column,
                             const AlpacaColumns& alpaca) {
  std::string out;
  for (size_t i = 0; i < formats.size(); ++i) {
    if (i) out += i + 1 == formats.size() ? " and " : ", ";
    out += std::string(dataset_format_name(formats[i])) + " (" + format_keys(formats[i], column, alpaca) + ")";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Field access

std::string type_of(const json& v) { return v.type_name(); }

const std::string& string_field(const json& obj, const char* key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_string())
    throw InvalidSample("wrong_type", where + " must be a string, got " + type_of(v));
  return v.get_ref<const std::string&>();
}

const json& array_field(const json& obj, const std::string& key) {
  const json& v = obj.at(key);
  if (!v.is_array())
    throw InvalidSample("wrong_type", "\"" + key + "\" must be an array, got " + type_of(v));
  if (v.empty()) throw InvalidSample("empty_array", "\"" + key + "\" is an empty array");
  return v;
}

// OpenAI: {"messages": [{"role": "system|user|assistant", "content": "..."}]}
Conversation parse_openai(const json& obj, const std::string& key) {
  const json& arr = array_field(obj, key);
  Conversation conv;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& m = arr[i];
    const std::string label = key + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw InvalidSample("message_not_object", label + " must be an object, got " + type_of(m));
    if (!m.contains("role")) throw InvalidSample("missing_role", label + " has no \"role\"");
    const json& role = m["role"];
    if (!role.is_string())
      throw InvalidSample("role_not_string", label + ".role must be a string, got " + type_of(role));
    const std::string& r = role.get_ref<const std::string&>();
    Message msg;
    if (r == "system") msg.role = Role::system;
    else if (r == "user") msg.role = Role::user;
    else if (r == "assistant") msg.role = Role::assistant;
    else if (r == "tool") msg.role = Role::tool;
    else
      throw InvalidSample("unknown_role", label + ".role " + quote_for_error(r) +
                                              " is not one of system, user, assistant, tool");
    // Tool calls are not given to the template yet: refused rather than dropped from the text.
    if (m.contains("tool_calls") && !m["tool_calls"].is_null() && !(m["tool_calls"].is_array() && m["tool_calls"].empty()))
      throw InvalidSample("tool_calls", label + " has tool_calls, which ringtune does not render yet (they would be "
                                                "left out of the text); write the call into \"content\" as the model "
                                                "should produce it, or leave the sample out");
    if (m.contains("function_call") && !m["function_call"].is_null())
      throw InvalidSample("tool_calls", label + " has a function_call, which ringtune does not render yet (it would be "
                                                "left out of the text); write the call into \"content\"");
    if (!m.contains("content")) throw InvalidSample("missing_content", label + " has no \"content\"");
    const json& content = m["content"];
    if (!content.is_string())
      throw InvalidSample("content_not_string", label + ".content must be a string, got " + type_of(content));
    msg.content = content.get<std::string>();
    if (m.contains("weight")) {  // OpenAI's fine-tuning format: 0 or 1 on an assistant message
      const json& w = m["weight"];
      if (msg.role != Role::assistant)
        throw InvalidSample("weight", label + ".weight is only for assistant messages (the loss is on them)");
      if (!w.is_number() || (w != 0 && w != 1))
        throw InvalidSample("weight", label + ".weight must be 0 or 1, got " + w.dump());
      msg.trained = w == 1;
    }
    conv.push_back(std::move(msg));
  }
  if (obj.contains("tools") && !obj["tools"].is_null() && !(obj["tools"].is_array() && obj["tools"].empty()))
    throw InvalidSample("tool_calls", "\"tools\" is given, which ringtune does not pass to the template yet (the "
                                      "tool list would be left out of the text); leave the sample out");
  if (obj.contains("functions") && !obj["functions"].is_null())
    throw InvalidSample("tool_calls", "\"functions\" is given, which ringtune does not pass to the template yet");
  return conv;
}

// ShareGPT: {"conversations": [{"from": "system|human|gpt|user|assistant", "value": "..."}]}; tool
// results as "tool" (or LLaMA-Factory's "observation", whose "function_call" is the assistant's).
Conversation parse_sharegpt(const json& obj, const std::string& key) {
  const json& arr = array_field(obj, key);
  Conversation conv;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& m = arr[i];
    const std::string label = key + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw InvalidSample("message_not_object", label + " must be an object, got " + type_of(m));
    if (!m.contains("from")) throw InvalidSample("missing_role", label + " has no \"from\"");
    const json& from = m["from"];
    if (!from.is_string())
      throw InvalidSample("role_not_string", label + ".from must be a string, got " + type_of(from));
    const std::string& r = from.get_ref<const std::string&>();
    Message msg;
    if (r == "system") msg.role = Role::system;
    else if (r == "human" || r == "user") msg.role = Role::user;
    else if (r == "gpt" || r == "assistant" || r == "function_call") msg.role = Role::assistant;
    else if (r == "tool" || r == "observation") msg.role = Role::tool;
    else
      throw InvalidSample("unknown_role", label + ".from " + quote_for_error(r) +
                                              " is not one of system, human, gpt, user, assistant, tool, "
                                              "function_call, observation");
    if (!m.contains("value")) throw InvalidSample("missing_content", label + " has no \"value\"");
    const json& value = m["value"];
    if (!value.is_string())
      throw InvalidSample("content_not_string", label + ".value must be a string, got " + type_of(value));
    msg.content = value.get<std::string>();
    conv.push_back(std::move(msg));
  }
  return conv;
}

void check_text(const std::string& text, const std::string& where) {
  if (text.empty()) throw InvalidSample("empty_content", where + " is empty");
  if (is_blank(text)) throw InvalidSample("blank_content", where + " is only whitespace");
}

// Alpaca: {"instruction": "...", "input": "..." (optional), "output": "...", "system": optional}.
// The user message is the instruction, then a blank line and the input when the input is not
// blank; an empty or absent "system" means no system message.
Conversation parse_alpaca(const json& obj, const AlpacaColumns& c) {
  const auto q = [](const std::string& k) { return "\"" + k + "\""; };
  for (const std::string* key : {&c.instruction, &c.output})
    if (!obj.contains(*key)) throw InvalidSample("missing_key", "missing key " + q(*key));
  const std::string& instruction = string_field(obj, c.instruction.c_str(), q(c.instruction));
  check_text(instruction, q(c.instruction));
  std::string input;
  if (obj.contains(c.input)) input = string_field(obj, c.input.c_str(), q(c.input));
  const std::string& output = string_field(obj, c.output.c_str(), q(c.output));
  check_text(output, q(c.output));
  std::string system;
  if (obj.contains(c.system)) system = string_field(obj, c.system.c_str(), q(c.system));

  Conversation conv;
  if (!is_blank(system)) conv.push_back({Role::system, system});
  std::string user = instruction;
  if (!is_blank(input)) user += "\n\n" + input;
  conv.push_back({Role::user, std::move(user)});
  conv.push_back({Role::assistant, output});
  return conv;
}

// TRL's prompt/completion records. Plain: {"prompt": "...", "completion": "..."}, the text is
// prompt + completion with the loss on the completion (no chat template, as TRL). Conversational:
// {"prompt": [messages], "completion": [one assistant message]}, the conversation prompt +
// completion with the loss on the completion only.
Sample parse_prompt_completion(const json& obj, ConversationUse use) {
  Sample sample;
  const json& prompt = obj.at("prompt");
  const json& completion = obj.at("completion");
  if (prompt.is_string()) {
    if (!completion.is_string())
      throw InvalidSample("wrong_type", "\"completion\" must be a string like \"prompt\", got " + type_of(completion));
    const std::string& p = prompt.get_ref<const std::string&>();
    const std::string& c = completion.get_ref<const std::string&>();
    check_text(c, "\"completion\"");
    sample.text = p + c;
    sample.supervised_from = p.size();
    sample.is_text = true;
    return sample;
  }
  if (!prompt.is_array())
    throw InvalidSample("wrong_type", "\"prompt\" must be a string or a list of messages, got " + type_of(prompt));
  if (!completion.is_array())
    throw InvalidSample("wrong_type", "\"completion\" must be a list of messages like \"prompt\", got " + type_of(completion));
  if (completion.size() != 1)
    throw InvalidSample("completion_size", "\"completion\" must hold one assistant message, got " +
                                               std::to_string(completion.size()));
  const Conversation head = parse_openai(obj, "prompt"), tail = parse_openai(obj, "completion");
  if (tail[0].role != Role::assistant)
    throw InvalidSample("completion_role", "completion[0].role must be assistant");
  sample.messages = head;
  sample.messages.push_back(tail[0]);
  validate_conversation(sample.messages, use, [&](size_t i) {
    return i < head.size() ? "prompt[" + std::to_string(i) + "]" : std::string("completion[0]");
  });
  sample.completion_only = true;
  return sample;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SampleParser

SampleParser::SampleParser(DatasetFormat format, ConversationUse use, std::string conversation_column,
                           DatasetFormat conversation_style, AlpacaColumns alpaca)
    : configured_(format),
      format_(format),
      use_(use),
      column_(std::move(conversation_column)),
      style_(conversation_style),
      alpaca_(std::move(alpaca)) {}

void SampleParser::reset() {
  format_ = configured_;
  detected_at_ = 0;
}

Sample SampleParser::parse(std::string_view line, int64_t line_number) {
  json obj;
  try {
    obj = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    // e.what(): "[json.exception.parse_error.101] parse error at line 1, column 5: <detail>"
    std::string detail = e.what();
    const size_t colon = detail.find(": ");
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    if (detail.size() > 160) detail = detail.substr(0, 160) + "...";
    throw InvalidSample("invalid_json", "invalid JSON at byte " + std::to_string(e.byte) + ": " + detail);
  } catch (const json::exception& e) {  // e.g. out_of_range.406: a number beyond double's range (1e99999)
    std::string detail = e.what();
    const size_t close = detail.find("] ");
    if (close != std::string::npos) detail = detail.substr(close + 2);
    if (detail.size() > 160) detail = detail.substr(0, 160) + "...";
    throw InvalidSample("invalid_json", "invalid JSON: " + detail);
  }
  if (!obj.is_object())
    throw InvalidSample("not_object", "expected a JSON object (one sample), got " + type_of(obj));

  const std::vector<DatasetFormat> found = formats_of(obj, column_, style_, alpaca_);
  if (format_ == DatasetFormat::auto_detect) {
    if (found.empty())
      throw InvalidSample("unknown_format",
                          "cannot tell the dataset format: no " +
                              (column_.empty() ? std::string("\"messages\", \"conversations\"")
                                               : "\"" + column_ + "\" (conversation_column)") +
                              ", " + format_keys(DatasetFormat::alpaca, "", alpaca_) +
                              ", \"text\" or \"prompt\"/\"completion\" key (or set dataset_format)");
    if (found.size() > 1)
      throw InvalidSample("ambiguous_format", "cannot tell the dataset format: the object has keys of " +
                                                  describe_formats(found, column_, alpaca_) + "; set dataset_format");
    // Detected from this line; kept only if the line turns out valid (first *valid* line).
    format_ = found[0];
    detected_at_ = line_number;
    try {
      return parse_as_format(obj);
    } catch (...) {
      format_ = DatasetFormat::auto_detect;
      detected_at_ = 0;
      throw;
    }
  } else if (std::find(found.begin(), found.end(), format_) == found.end()) {
    const std::string origin =
        configured_ == DatasetFormat::auto_detect
            ? std::string("the file is ") + dataset_format_name(format_) + ", detected at line " +
                  std::to_string(detected_at_)
            : std::string("dataset_format: ") + dataset_format_name(format_);
    if (!found.empty())
      throw InvalidSample("format_mismatch", "this sample is " + describe_formats(found, column_, alpaca_) + ", but " + origin);
    const std::string key =
        format_ == DatasetFormat::alpaca ? "\"" + alpaca_.instruction + "\"" : format_keys(format_, column_);
    throw InvalidSample("missing_key", "missing key " + key + " (" + origin + ")");
  }

  return parse_as_format(obj);
}

Sample SampleParser::parse_as_format(const nlohmann::json& obj) const {
  Sample sample;
  switch (format_) {
    case DatasetFormat::openai:
    case DatasetFormat::sharegpt: {
      const std::string key = chat_key(format_, column_);
      sample.messages = format_ == DatasetFormat::openai ? parse_openai(obj, key) : parse_sharegpt(obj, key);
      validate_conversation(sample.messages, use_, [&](size_t i) { return key + "[" + std::to_string(i) + "]"; });
      break;
    }
    case DatasetFormat::alpaca:
      sample.messages = parse_alpaca(obj, alpaca_);  // valid by construction once its fields are
      break;
    case DatasetFormat::text:
      sample.text = string_field(obj, "text", "\"text\"");
      check_text(sample.text, "\"text\"");
      sample.is_text = true;
      break;
    case DatasetFormat::prompt_completion:
      return parse_prompt_completion(obj, use_);
    case DatasetFormat::auto_detect:
      break;
  }
  return sample;
}

}  // namespace ringtune
