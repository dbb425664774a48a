// PCRE2 wrapper for tokenizer.json regular expressions; see regex.h.
#include "src/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <cstring>

#include "src/error.h"

#include "src/utf8.h"

namespace ringtune {

namespace {

// ---------------------------------------------------------------------------------------------
// Translation to the reference's regex semantics.

// JavaScript's \s: the characters of utf8::is_js_whitespace, as class members.
constexpr const char* kJsSpaceMembers =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}\\x{FEFF}";

// The contraction group of Llama 3 / Qwen2 / GPT-4 patterns uses an inline case-insensitive group.
// Under Unicode case folding it would also match U+017F (long s) and U+212A (Kelvin sign); the
// reference replaces it by ASCII alternatives, and so do we.
constexpr const char* kCaselessContractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
constexpr const char* kAsciiContractions =
    "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

std::string translate(std::string_view pattern) {
  std::string p(pattern);
  for (size_t at = p.find(kCaselessContractions); at != std::string::npos;
       at = p.find(kCaselessContractions, at)) {
    p.replace(at, std::strlen(kCaselessContractions), kAsciiContractions);
    at += std::strlen(kAsciiContractions);
  }
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index in `p` just after '[' or '[^'
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        if (in_class) out += kJsSpaceMembers;
        else out += std::string("[") + kJsSpaceMembers + "]";
        ++i;
        continue;
      }
      if (n == 'S' && !in_class) {
        out += std::string("[^") + kJsSpaceMembers + "]";
        ++i;
        continue;
      }
      out += c;
      out += n;
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out += '^';
        ++i;
      }
      class_start = i + 1;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:name:]
        const size_t close = p.find(":]", i + 2);
        if (close != std::string::npos) {
          out.append(p, i, close + 2 - i);
          i = close + 1;
          continue;
        }
      }
      if (c == ']' && i != class_start) in_class = false;
    }
    out += c;
  }
  return out;
}

pcre2_match_data* thread_match_data() {
  // One pair of offsets is all we read; the same block serves every pattern on this thread.
  struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  };
  thread_local Holder holder;
  return holder.md;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Regex> Regex::compile(std::string_view pattern, std::string* error) {
  std::unique_ptr<Regex> re(new Regex());
  re->translated_ = translate(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re->translated_.data()),
                                   re->translated_.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset,
                                   nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    if (error) {
      *error = std::string(reinterpret_cast<const char*>(buf)) + " at offset " +
               std::to_string(err_offset);
    }
    return nullptr;
  }
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

std::unique_ptr<Regex> Regex::literal(std::string_view text) {
  // Every ASCII character that is not a letter or digit is written as \x{..}; other bytes
  // (letters, digits, UTF-8 sequences) stand for themselves.
  static const char* hex = "0123456789ABCDEF";
  std::string pattern;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80 && !std::isalnum(c)) {
      pattern += "\\x{";
      pattern += hex[c >> 4];
      pattern += hex[c & 15];
      pattern += '}';
    } else {
      pattern += ch;
    }
  }
  std::unique_ptr<Regex> re(new Regex());
  re->translated_ = pattern;
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (code == nullptr) return nullptr;
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Regex::find(std::string_view text, size_t start, size_t* match_begin,
                 size_t* match_end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = thread_match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (start <= text.size()) {
    const int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), start, 0, md, nullptr)
                        : pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md,
                                      nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      throw Error("tokenizer regex /" + translated_ + "/ failed: " +
                  reinterpret_cast<const char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] > ov[0]) {
      *match_begin = ov[0];
      *match_end = ov[1];
      return true;
    }
    // Empty match: skip one character and search again.
    if (ov[0] >= text.size()) return false;
    start = ov[0] + utf8::char_length(static_cast<unsigned char>(text[ov[0]]));
  }
  return false;
}

}  // namespace ringtune
