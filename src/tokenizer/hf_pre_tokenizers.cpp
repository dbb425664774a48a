// tokenizer.json pre-tokenizers; see hf_pre_tokenizers.h.
//
// Split follows HF tokenizers' SplitDelimiterBehavior (Isolated, Removed, MergedWithPrevious,
// MergedWithNext, Contiguous) and `invert`. The reference JS port implements only Isolated and
// Removed and, with invert, keeps only the matches; for the other cases we follow the Rust
// library. ByteLevel does not rewrite text into the GPT-2 alphabet here: the BPE model works on
// raw bytes (its vocabulary is mapped back to bytes when loaded), which gives the same tokens.
#include "src/tokenizer/hf_pre_tokenizers.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "src/tokenizer/hf_json.h"
#include "src/tokenizer/regex.h"

namespace ringtune {

namespace {

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Piece {
  size_t begin, end;
  bool is_match;
};

// Cuts [begin, end) of `text` at the given matches (absolute, ordered, non-empty) and appends the
// resulting spans according to the behavior.
void split_by_matches(size_t begin, size_t end, const std::vector<TextSpan>& matches,
                      SplitBehavior behavior, bool invert, std::vector<TextSpan>& out) {
  std::vector<Piece> pieces;
  pieces.reserve(matches.size() * 2 + 1);
  size_t prev = begin;
  for (const TextSpan& m : matches) {
    if (prev < m.begin) pieces.push_back({prev, m.begin, false});
    pieces.push_back({m.begin, m.end, true});
    prev = m.end;
  }
  if (prev < end) pieces.push_back({prev, end, false});
  if (invert) {
    for (Piece& p : pieces) p.is_match = !p.is_match;
  }
  std::vector<Piece> merged;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      merged = std::move(pieces);
      break;
    case SplitBehavior::kRemoved:
      for (const Piece& p : pieces) {
        if (!p.is_match) merged.push_back(p);
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match && !previous_match && !merged.empty()) merged.back().end = p.end;
        else merged.push_back(p);
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) merged.back().begin = it->begin;
        else merged.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match == previous_match && !merged.empty()) merged.back().end = p.end;
        else merged.push_back(p);
        previous_match = p.is_match;
      }
      break;
    }
  }
  for (const Piece& p : merged) {
    if (p.end > p.begin) out.push_back({p.begin, p.end});
  }
}

// Matches of `re` inside text[span), as absolute spans.
void find_matches(const Regex& re, const std::string& text, TextSpan span,
                  std::vector<TextSpan>& matches) {
  matches.clear();
  const std::string_view view(text.data() + span.begin, span.size());
  re.for_each_match(view, [&](size_t b, size_t e) {
    matches.push_back({span.begin + b, span.begin + e});
  });
}

// ---------------------------------------------------------------------------------------------

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> re, SplitBehavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}

  void pre_tokenize(NormalizedText& text, std::vector<TextSpan>& spans) const override {
    std::vector<TextSpan> out;
    out.reserve(spans.size() + text.text.size() / 4);
    if (behavior_ == SplitBehavior::kIsolated) {
      // Fast path: every match and every gap between matches is a piece.
      for (const TextSpan& span : spans) {
        size_t prev = span.begin;
        const std::string_view view(text.text.data() + span.begin, span.size());
        re_->for_each_match(view, [&](size_t b, size_t e) {
          if (span.begin + b > prev) out.push_back({prev, span.begin + b});
          out.push_back({span.begin + b, span.begin + e});
          prev = span.begin + e;
        });
        if (prev < span.end) out.push_back({prev, span.end});
      }
    } else {
      std::vector<TextSpan> matches;
      for (const TextSpan& span : spans) {
        find_matches(*re_, text.text, span, matches);
        split_by_matches(span.begin, span.end, matches, behavior_, invert_, out);
      }
    }
    spans = std::move(out);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

// ---------------------------------------------------------------------------------------------

// GPT-2's pattern, as the reference writes it.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}

  void pre_tokenize(NormalizedText& text, std::vector<TextSpan>& spans) const override {
    if (add_prefix_space_) {
      bool needed = false;
      for (const TextSpan& s : spans) needed = needed || text.text[s.begin] != ' ';
      if (needed) {
        NormalizedBuilder b(text);
        std::vector<TextSpan> moved;
        for (const TextSpan& s : spans) {
          const size_t start = b.size();
          if (text.text[s.begin] != ' ') b.insert(" ", text.source_at(s.begin));
          b.copy(s.begin, s.end);
          moved.push_back({start, b.size()});
        }
        text = b.finish();
        spans = std::move(moved);
      }
    }
    if (re_) {
      std::vector<TextSpan> out;
      for (const TextSpan& span : spans) {
        size_t prev = span.begin;
        const std::string_view view(text.text.data() + span.begin, span.size());
        re_->for_each_match(view, [&](size_t b, size_t e) {
          if (span.begin + b > prev) out.push_back({prev, span.begin + b});
          out.push_back({span.begin + b, span.begin + e});
          prev = span.begin + e;
        });
        if (prev < span.end) out.push_back({prev, span.end});
      }
      spans = std::move(out);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

// ---------------------------------------------------------------------------------------------

enum class PrependScheme { kAlways, kFirst, kNever };

// Replaces spaces by the replacement character (▁), prepends one per the scheme ("first": only to
// the piece that starts the whole input), and with `split` cuts before every replacement
// character (HF's MergedWithNext).
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void pre_tokenize(NormalizedText& text, std::vector<TextSpan>& spans) const override {
    NormalizedBuilder b(text);
    std::vector<TextSpan> out;
    for (const TextSpan& s : spans) {
      const size_t start = b.size();
      const bool starts_with_space = text.text[s.begin] == ' ';
      const bool starts_with_replacement =
          text.text.compare(s.begin, replacement_.size(), replacement_) == 0;
      if (!starts_with_space && !starts_with_replacement &&
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && text.source_at(s.begin) == 0))) {
        b.insert(replacement_, text.source_at(s.begin));
      }
      for (size_t i = s.begin; i < s.end; ++i) {
        if (text.text[i] == ' ') b.insert(replacement_, text.source_at(i));
        else b.copy(i, i + 1);
      }
      const size_t stop = b.size();
      if (!split_) {
        out.push_back({start, stop});
        continue;
      }
      // Cut before each replacement character.
      const std::string& t = b.text();
      size_t piece = start;
      for (size_t at = t.find(replacement_, start + 1); at != std::string::npos && at < stop;
           at = t.find(replacement_, at + replacement_.size())) {
        if (at > piece) out.push_back({piece, at});
        piece = at;
      }
      if (stop > piece) out.push_back({piece, stop});
    }
    text = b.finish();
    spans = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

// ---------------------------------------------------------------------------------------------

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void pre_tokenize(NormalizedText& text, std::vector<TextSpan>& spans) const override {
    for (const auto& p : parts_) {
      if (spans.empty()) return;
      p->pre_tokenize(text, spans);
    }
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

std::unique_ptr<PreTokenizer> build(const nlohmann::json& config, const std::string& file,
                                    PreTokenizerInfo* info) {
  JsonContext ctx{file, "pre_tokenizer"};
  const std::string type = json_type(config, ctx);
  ctx.component = "pre_tokenizer " + type;
  if (info->byte_level) {
    ctx.fail("a pre-tokenizer after ByteLevel is not supported (ByteLevel must come last)");
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& c : json_array(config, "pretokenizers", ctx)) {
      if (c.is_null()) continue;
      parts.push_back(build(c, file, info));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split") {
    bool is_regex = false;
    const std::string pattern = json_pattern_source(config, "pattern", &is_regex, ctx);
    std::unique_ptr<Regex> re;
    if (is_regex) {
      std::string error;
      re = Regex::compile(pattern, &error);
      if (!re) ctx.fail("bad regex \"" + pattern + "\": " + error);
    } else {
      if (pattern.empty()) ctx.fail("empty \"String\" pattern");
      re = Regex::literal(pattern);
      if (!re) ctx.fail("cannot compile literal pattern \"" + pattern + "\"");
    }
    const std::string behavior = json_string_or(config, "behavior", "Isolated", ctx);
    SplitBehavior b;
    if (behavior == "Isolated") b = SplitBehavior::kIsolated;
    else if (behavior == "Removed") b = SplitBehavior::kRemoved;
    else if (behavior == "MergedWithPrevious") b = SplitBehavior::kMergedWithPrevious;
    else if (behavior == "MergedWithNext") b = SplitBehavior::kMergedWithNext;
    else if (behavior == "Contiguous") b = SplitBehavior::kContiguous;
    else ctx.fail("unknown behavior \"" + behavior + "\"");
    return std::make_unique<SplitPreTokenizer>(std::move(re), b,
                                               json_bool_or(config, "invert", false, ctx));
  }
  if (type == "ByteLevel") {
    info->byte_level = true;
    std::unique_ptr<Regex> re;
    if (json_bool_or(config, "use_regex", true, ctx)) {
      std::string error;
      re = Regex::compile(kGpt2Pattern, &error);
      if (!re) throw Error("GPT-2 pattern does not compile: " + error);
    }
    return std::make_unique<ByteLevelPreTokenizer>(
        json_bool_or(config, "add_prefix_space", true, ctx), std::move(re));
  }
  if (type == "Metaspace") {
    const std::string replacement = json_string_or(config, "replacement", "\xE2\x96\x81", ctx);
    if (replacement.empty()) ctx.fail("\"replacement\" must not be empty");
    PrependScheme scheme = PrependScheme::kAlways;
    const std::string s = json_string_or(config, "prepend_scheme", "", ctx);
    if (s.empty()) {
      // Older files: add_prefix_space (default true) means "always".
      scheme = json_bool_or(config, "add_prefix_space", true, ctx) ? PrependScheme::kAlways
                                                                     : PrependScheme::kNever;
    } else if (s == "always") {
      scheme = PrependScheme::kAlways;
    } else if (s == "first") {
      scheme = PrependScheme::kFirst;
    } else if (s == "never") {
      scheme = PrependScheme::kNever;
    } else {
      ctx.fail("unknown prepend_scheme \"" + s + "\"");
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme,
                                                   json_bool_or(config, "split", true, ctx));
  }
  throw InputError(file + ": unsupported pre_tokenizer type \"" + type + "\"");
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config,
                                                 const std::string& file, PreTokenizerInfo* info) {
  if (config.is_null()) return nullptr;
  return build(config, file, info);
}

}  // namespace ringtune
