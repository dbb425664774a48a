// tokenizer.json normalizers; see hf_normalizers.h. Semantics follow the reference (the JS port
// of HF tokenizers): Prepend prepends to every non-empty section, Replace replaces every
// non-overlapping occurrence left to right.
#include "src/tokenizer/hf_normalizers.h"

#include <nlohmann/json.hpp>

#include <vector>

#include "src/tokenizer/hf_json.h"
#include "src/tokenizer/regex.h"
#include "src/tokenizer/unicode_norm.h"

namespace ringtune {

namespace {

// ---------------------------------------------------------------------------------------------

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  NormalizedText normalize(NormalizedText in) const override {
    if (in.text.empty()) return in;
    NormalizedBuilder b(in);
    b.insert(prepend_, in.source_at(0));
    b.copy(0, in.text.size());
    return b.finish();
  }

 private:
  std::string prepend_;
};

// ---------------------------------------------------------------------------------------------

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}

  NormalizedText normalize(NormalizedText in) const override {
    std::vector<TextSpan> matches;
    if (regex_) {
      regex_->for_each_match(in.text, [&](size_t b, size_t e) { matches.push_back({b, e}); });
    } else if (!literal_.empty()) {
      for (size_t at = in.text.find(literal_); at != std::string::npos;
           at = in.text.find(literal_, at + literal_.size())) {
        matches.push_back({at, at + literal_.size()});
      }
    }
    if (matches.empty()) return in;
    NormalizedBuilder b(in);
    size_t pos = 0;
    for (const TextSpan& m : matches) {
      b.copy(pos, m.begin);
      b.insert(content_, in.source_at(m.begin));
      pos = m.end;
    }
    b.copy(pos, in.text.size());
    return b.finish();
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

// ---------------------------------------------------------------------------------------------

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(bool compose) : compose_(compose) {}
  NormalizedText normalize(NormalizedText in) const override {
    return unicode_normalize(std::move(in), compose_);
  }

 private:
  bool compose_;
};

// ---------------------------------------------------------------------------------------------

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  NormalizedText normalize(NormalizedText in) const override {
    for (const auto& p : parts_) in = p->normalize(std::move(in));
    return in;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& file) {
  if (config.is_null()) return nullptr;
  JsonContext ctx{file, "normalizer"};
  const std::string type = json_type(config, ctx);
  ctx.component = "normalizer " + type;
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& c : json_array(config, "normalizers", ctx)) {
      if (c.is_null()) continue;
      parts.push_back(make_normalizer(c, file));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") {
    return std::make_unique<PrependNormalizer>(json_string(config, "prepend", ctx));
  }
  if (type == "Replace") {
    bool is_regex = false;
    const std::string pattern = json_pattern_source(config, "pattern", &is_regex, ctx);
    const std::string content = json_string(config, "content", ctx);
    std::unique_ptr<Regex> regex;
    if (is_regex) {
      std::string error;
      regex = Regex::compile(pattern, &error);
      if (!regex) ctx.fail("bad regex \"" + pattern + "\": " + error);
    }
    return std::make_unique<ReplaceNormalizer>(is_regex ? "" : pattern, std::move(regex), content);
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(true);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(false);
  throw InputError(file + ": unsupported normalizer type \"" + type + "\"");
}

}  // namespace ringtune
