// Jinja2 lexing with trim_blocks and lstrip_blocks; see lexer.h. Follows jinja2/lexer.py: tag ends
// are recognised only while brackets are balanced, `-` strips all whitespace on its side,
// lstrip_blocks strips a block or comment tag's indentation when nothing but spaces precede it on
// its line (a line starts at a newline in the text, or where the previous tag's end consumed one).
#include "src/template/lexer.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "src/utf8.h"

namespace ringtune::jinja {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) : s_(src) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < s_.size(); ++i)
      if (s_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos <= s_.size()) {
      const size_t tag = find_tag(pos);
      std::string text = s_.substr(pos, (tag == std::string::npos ? s_.size() : tag) - pos);
      if (tag != std::string::npos) {
        const char kind = s_[tag + 1];
        const char sign = tag + 2 < s_.size() ? s_[tag + 2] : '\0';
        if (sign == '-') {
          while (!text.empty() && is_space(text.back())) text.pop_back();
        } else if ((kind == '%' || kind == '#') && sign != '+') {
          const size_t l = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
          if ((l > 0 || line_starting) &&
              std::all_of(text.begin() + static_cast<std::ptrdiff_t>(l), text.end(), [](char c) { return is_space(c); }))
            text.resize(l);
        }
      }
      if (!text.empty()) out_.push_back({TokenType::Text, text, at(pos)});
      if (tag == std::string::npos) break;
      const char kind = s_[tag + 1];
      if (kind == '#') {
        pos = comment(tag, line_starting);
      } else if (kind == '%' && is_raw(tag)) {
        pos = raw(tag, line_starting);
      } else {
        pos = tag_body(tag, kind, line_starting);
      }
    }
    out_.push_back({TokenType::End, "", at(s_.size())});
    return std::move(out_);
  }

 private:
  Location at(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    return {static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
  }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // After a tag end at `pos` (just past "}}"/"%}"/"#}"): the manual strip or trim_blocks.
  size_t after_end(size_t pos, char sign, bool block_like, bool& line_starting) const {
    if (sign == '-') {
      size_t p = pos;
      while (p < s_.size() && is_space(s_[p])) ++p;
      line_starting = p > pos && s_[p - 1] == '\n';
      return p;
    }
    if (sign != '+' && block_like && pos < s_.size() && s_[pos] == '\n') {
      line_starting = true;
      return pos + 1;
    }
    line_starting = false;
    return pos;
  }

  size_t comment(size_t tag, bool& line_starting) {
    const size_t end = s_.find("#}", tag + 2);
    if (end == std::string::npos) throw TemplateError("unclosed comment (missing #})", at(tag));
    const char sign = end > tag + 2 && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : '\0';
    return after_end(end + 2, sign, true, line_starting);
  }

  // {% raw %} with optional signs; returns true when the block tag at `tag` is a raw opener.
  bool is_raw(size_t tag) const {
    size_t p = tag + 2;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    while (p < s_.size() && is_space(s_[p])) ++p;
    if (s_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < s_.size() && is_space(s_[p])) ++p;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    return s_.compare(p, 2, "%}") == 0;
  }

  size_t raw(size_t tag, bool& line_starting) {
    size_t p = s_.find("%}", tag) + 2;
    const char open_sign = s_[p - 3];
    p = after_end(p, open_sign == '-' || open_sign == '+' ? open_sign : '\0', true, line_starting);
    for (size_t q = s_.find("{%", p); q != std::string::npos; q = s_.find("{%", q + 2)) {
      size_t r = q + 2;
      const char sign = r < s_.size() && (s_[r] == '-' || s_[r] == '+') ? s_[r] : '\0';
      if (sign) ++r;
      while (r < s_.size() && is_space(s_[r])) ++r;
      if (s_.compare(r, 6, "endraw") != 0) continue;
      r += 6;
      while (r < s_.size() && is_space(s_[r])) ++r;
      const char end_sign = r < s_.size() && (s_[r] == '-' || s_[r] == '+') ? s_[r] : '\0';
      if (end_sign) ++r;
      if (s_.compare(r, 2, "%}") != 0) continue;
      std::string body = s_.substr(p, q - p);
      if (sign == '-')
        while (!body.empty() && is_space(body.back())) body.pop_back();
      if (!body.empty()) out_.push_back({TokenType::Text, body, at(p)});
      return after_end(r + 2, end_sign, true, line_starting);
    }
    throw TemplateError("unclosed raw block (missing {% endraw %})", at(tag));
  }

  size_t tag_body(size_t tag, char kind, bool& line_starting) {
    const bool block = kind == '%';
    out_.push_back({block ? TokenType::BlockBegin : TokenType::VarBegin, block ? "{%" : "{{", at(tag)});
    size_t p = tag + 2;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    const char close = block ? '%' : '}';
    int depth = 0;  // open brackets: a tag end is recognised only at depth 0, as jinja2 does
    while (true) {
      while (p < s_.size() && is_space(s_[p])) ++p;
      if (p >= s_.size())
        throw TemplateError(std::string("unclosed tag (missing ") + (block ? "%}" : "}}") + ")", at(tag));
      if (depth == 0) {
        const char sign = s_[p] == '-' || s_[p] == '+' ? s_[p] : '\0';
        const size_t q = p + (sign ? 1 : 0);
        if (q + 1 < s_.size() && s_[q] == close && s_[q + 1] == '}' && !(sign == '+' && !block)) {
          out_.push_back({block ? TokenType::BlockEnd : TokenType::VarEnd, block ? "%}" : "}}", at(p)});
          return after_end(q + 2, sign, block, line_starting);
        }
      }
      p = expression_token(p, depth);
    }
  }

  size_t expression_token(size_t p, int& depth) {
    const char c = s_[p];
    const Location where = at(p);
    if (c == '\'' || c == '"') return string_literal(p);
    if (std::isdigit(static_cast<unsigned char>(c))) return number(p);
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80) {
      size_t q = p;
      while (q < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[q])) || s_[q] == '_' ||
                               static_cast<unsigned char>(s_[q]) >= 0x80))
        ++q;
      out_.push_back({TokenType::Name, s_.substr(p, q - p), where});
      return q;
    }
    static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : two)
      if (s_.compare(p, 2, op) == 0) {
        out_.push_back({TokenType::Operator, op, where});
        return p + 2;
      }
    if (std::string("+-/*%~[](){},.:|=<>;").find(c) != std::string::npos) {
      if (c == '(' || c == '[' || c == '{') ++depth;
      if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
      out_.push_back({TokenType::Operator, std::string(1, c), where});
      return p + 1;
    }
    throw TemplateError("unexpected character " + std::string(1, c) + " in a tag", where);
  }

  size_t string_literal(size_t p) {
    const char quote = s_[p];
    std::string value;
    size_t q = p + 1;
    while (q < s_.size() && s_[q] != quote) {
      if (s_[q] != '\\') {
        value += s_[q++];
        continue;
      }
      if (q + 1 >= s_.size()) break;
      const char e = s_[q + 1];
      q += 2;
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '0': value += '\0'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (q + n > s_.size()) throw TemplateError("truncated \\" + std::string(1, e) + " escape", at(q - 2));
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = s_[q + k];
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              throw TemplateError("bad \\" + std::string(1, e) + " escape", at(q - 2));
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : std::tolower(h) - 'a' + 10);
          }
          utf8::append(value, cp);
          q += n;
          break;
        }
        default:  // Python keeps unknown escapes as they are
          value += '\\';
          value += e;
      }
    }
    if (q >= s_.size()) throw TemplateError("unclosed string literal", at(p));
    out_.push_back({TokenType::String, value, at(p)});
    return q + 1;
  }

  size_t number(size_t p) {
    size_t q = p;
    const auto digits = [&] {
      while (q < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[q])) || s_[q] == '_')) ++q;
    };
    digits();
    bool is_float = false;
    if (q + 1 < s_.size() && s_[q] == '.' && std::isdigit(static_cast<unsigned char>(s_[q + 1]))) {
      is_float = true;
      ++q;
      digits();
    }
    if (q < s_.size() && (s_[q] == 'e' || s_[q] == 'E')) {
      size_t r = q + 1;
      if (r < s_.size() && (s_[r] == '+' || s_[r] == '-')) ++r;
      if (r < s_.size() && std::isdigit(static_cast<unsigned char>(s_[r]))) {
        is_float = true;
        q = r;
        digits();
      }
    }
    std::string text = s_.substr(p, q - p);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    out_.push_back({is_float ? TokenType::Float : TokenType::Integer, text, at(p)});
    return q;
  }

  const std::string& s_;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(source).run(); }

}  // namespace ringtune::jinja
