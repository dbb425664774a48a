// UTF-8 validation, JavaScript-compatible whitespace trimming and error-message quoting.
#include "src/data/utf8.h"

#include <cstdio>

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Decoding

namespace {

// Decodes one well-formed sequence at text[pos]; returns its length (1..4) and sets `cp`, or 0
// when the bytes there are ill-formed (Unicode Table 3-7, "Well-Formed UTF-8 Byte Sequences").
size_t decode_one(std::string_view text, size_t pos, uint32_t& cp) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const size_t n = text.size() - pos;
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  const auto cont = [&](size_t i, uint8_t lo = 0x80, uint8_t hi = 0xBF) {
    return i < n && byte(pos + i) >= lo && byte(pos + i) <= hi;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(1)) return 0;
    cp = ((b0 & 0x1Fu) << 6) | (byte(pos + 1) & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    const uint8_t hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
    if (!cont(1, lo, hi) || !cont(2)) return 0;
    cp = ((b0 & 0x0Fu) << 12) | ((byte(pos + 1) & 0x3Fu) << 6) | (byte(pos + 2) & 0x3Fu);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80;  // no overlong forms
    const uint8_t hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
    if (!cont(1, lo, hi) || !cont(2) || !cont(3)) return 0;
    cp = ((b0 & 0x07u) << 18) | ((byte(pos + 1) & 0x3Fu) << 12) | ((byte(pos + 2) & 0x3Fu) << 6) |
         (byte(pos + 3) & 0x3Fu);
    return 4;
  }
  return 0;
}

bool is_js_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions

int64_t first_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // Fast path over ASCII.
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = decode_one(text, pos, cp);
    if (len == 0) return static_cast<int64_t>(pos);
    pos += len;
  }
  return -1;
}

std::string_view trim_whitespace(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    uint32_t cp = 0;
    const size_t len = decode_one(text, begin, cp);
    if (len == 0 || !is_js_whitespace(cp)) break;
    begin += len;
  }
  size_t end = text.size();
  while (end > begin) {
    // Step back to the start of the last code point.
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    uint32_t cp = 0;
    const size_t len = decode_one(text, start, cp);
    if (len == 0 || start + len != end || !is_js_whitespace(cp)) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

bool is_blank(std::string_view text) { return trim_whitespace(text).empty(); }

std::string quote_for_error(std::string_view text, size_t max_bytes) {
  std::string out = "\"";
  size_t pos = 0;
  while (pos < text.size()) {
    if (out.size() > max_bytes) {
      out += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(text[pos]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++pos;
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++pos;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++pos;
    } else {
      uint32_t cp = 0;
      const size_t len = decode_one(text, pos, cp);
      if (len == 0) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
        ++pos;
      } else {
        out.append(text.substr(pos, len));
        pos += len;
      }
    }
  }
  out += '"';
  return out;
}

}  // namespace ringtune
