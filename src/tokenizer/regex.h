// PCRE2 wrapper for the Unicode regular expressions in tokenizer.json files (Split pre-tokenizer,
// Replace normalizer/decoder, the GPT-2 ByteLevel pattern). Compiled 8-bit with PCRE2_UTF |
// PCRE2_UCP and JIT when available. Patterns are translated so that they behave as in the
// reference (the JS port of HF tokenizers): `\s`/`\S` mean JavaScript's whitespace set (which has
// U+FEFF and lacks U+0085 and U+180E, unlike PCRE2's), and the case-insensitive contraction group
// of GPT-4-style patterns is expanded to ASCII-only alternatives as the reference does.
// defines: Regex
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace ringtune {

class Regex {
 public:
  // Compiles `pattern`; on failure returns nullptr and sets *error to PCRE2's message.
  static std::unique_ptr<Regex> compile(std::string_view pattern, std::string* error);
  // Literal (escaped) pattern.
  static std::unique_ptr<Regex> literal(std::string_view text);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first non-empty match in text[start, text.size()). `text` must be valid UTF-8 and
  // `start` a character boundary. Returns false when there is none.
  bool find(std::string_view text, size_t start, size_t* match_begin, size_t* match_end) const;

  // Calls fn(begin, end) for each successive non-overlapping, non-empty match.
  template <class Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    size_t pos = 0, b = 0, e = 0;
    while (pos <= text.size() && find(text, pos, &b, &e)) {
      fn(b, e);
      pos = e;
    }
  }

  // The pattern after translation (for messages and tests).
  const std::string& translated() const { return translated_; }

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
  std::string translated_;
};

}  // namespace ringtune
