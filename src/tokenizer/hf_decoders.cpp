// tokenizer.json decoders; see hf_decoders.h. Semantics follow the reference JS port, except the
// Metaspace decoder, which strips the leading space of the first token unless prepend_scheme is
// "never" (the Rust library's rule; the JS port looks only at the legacy add_prefix_space key).
#include "src/tokenizer/hf_decoders.h"

#include <nlohmann/json.hpp>

#include "src/tokenizer/byte_level.h"
#include "src/tokenizer/hf_json.h"
#include "src/tokenizer/regex.h"
#include "src/utf8.h"

namespace ringtune {

namespace {

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, pos)) {
    out.append(s, pos, at - pos);
    out += to;
    pos = at + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// ---------------------------------------------------------------------------------------------

class ByteLevelDecoder : public Decoder {
 public:
  explicit ByteLevelDecoder(const std::unordered_set<std::string>* added) : added_(added) {}

  void decode_chain(std::vector<std::string>& tokens) const override {
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    std::vector<std::string> out;
    std::string bytes, raw;
    bool pending = false;
    for (const std::string& t : tokens) {
      if (added_->count(t)) {
        if (pending) out.push_back(utf8::lossy(bytes));
        bytes.clear();
        pending = false;
        out.push_back(t);
        continue;
      }
      // A token with a character outside the byte alphabet contributes its own UTF-8 bytes.
      if (alphabet.to_bytes(t, &raw)) bytes += raw;
      else bytes += t;
      pending = true;
    }
    if (pending) out.push_back(utf8::lossy(bytes));
    tokens = std::move(out);
  }

 private:
  const std::unordered_set<std::string>* added_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      if (!regex_) {
        t = replace_all(t, literal_, content_);
        continue;
      }
      if (utf8::first_invalid(t) != std::string::npos) continue;
      std::string out;
      size_t pos = 0;
      regex_->for_each_match(t, [&](size_t b, size_t e) {
        out.append(t, pos, b - pos);
        out += content_;
        pos = e;
      });
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    for (const std::string& t : tokens) {
      int hi = -1, lo = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        hi = hex_value(t[3]);
        lo = hex_value(t[4]);
      }
      if (hi >= 0 && lo >= 0) {
        bytes += static_cast<char>(hi * 16 + lo);
        continue;
      }
      if (!bytes.empty()) out.push_back(utf8::lossy(bytes));
      bytes.clear();
      out.push_back(t);
    }
    if (!bytes.empty()) out.push_back(utf8::lossy(bytes));
    tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& t : tokens) joined += t;
    tokens.assign(1, std::move(joined));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int64_t start, int64_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (int64_t i = 0; i < start_ && t.compare(b, content_.size(), content_) == 0; ++i) {
        b += content_.size();
      }
      for (int64_t i = 0; i < stop_ && e >= b + content_.size() &&
                          t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++i) {
        e -= content_.size();
      }
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  int64_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string t = replace_all(tokens[i], replacement_, " ");
      if (i == 0 && strip_first_ && !t.empty() && t[0] == ' ') t.erase(0, 1);
      tokens[i] = std::move(t);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config, const std::string& file,
                                      const std::unordered_set<std::string>* added_tokens) {
  if (config.is_null()) return nullptr;
  JsonContext ctx{file, "decoder"};
  const std::string type = json_type(config, ctx);
  ctx.component = "decoder " + type;
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& c : json_array(config, "decoders", ctx)) {
      if (c.is_null()) continue;
      parts.push_back(make_decoder(c, file, added_tokens));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>(added_tokens);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    bool is_regex = false;
    const std::string pattern = json_pattern_source(config, "pattern", &is_regex, ctx);
    std::unique_ptr<Regex> regex;
    if (is_regex) {
      std::string error;
      regex = Regex::compile(pattern, &error);
      if (!regex) ctx.fail("bad regex \"" + pattern + "\": " + error);
    }
    return std::make_unique<ReplaceDecoder>(is_regex ? "" : pattern, std::move(regex),
                                            json_string(config, "content", ctx));
  }
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(json_string(config, "content", ctx),
                                          json_int_or(config, "start", 0, ctx),
                                          json_int_or(config, "stop", 0, ctx));
  }
  if (type == "Metaspace") {
    const std::string replacement = json_string_or(config, "replacement", "\xE2\x96\x81", ctx);
    const std::string scheme = json_string_or(config, "prepend_scheme", "", ctx);
    const bool strip_first = scheme.empty() ? json_bool_or(config, "add_prefix_space", true, ctx)
                                            : scheme != "never";
    return std::make_unique<MetaspaceDecoder>(replacement, strip_first);
  }
  throw InputError(file + ": unsupported decoder type \"" + type + "\"");
}

}  // namespace ringtune
