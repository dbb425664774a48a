// UTF-8 helpers shared by the tokenizers and the template engine: decoding one code point,
// validation, encoding, and the lossy decoding (invalid bytes become U+FFFD) that byte-level
// decoders need.
// defines (namespace ringtune::utf8): char_length, valid_length_at, first_invalid, decode_at,
//          append, lossy, is_js_whitespace
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringtune::utf8 {

// Length of the UTF-8 sequence that starts with `lead`, judged from the lead byte alone
// (1 for ASCII and for bytes that cannot start a sequence).
inline size_t char_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// Length of a well-formed UTF-8 sequence at s[i] (1..4), or 0 if the bytes there are not one
// (overlong forms, surrogates, code points above U+10FFFF and truncated sequences are invalid).
inline size_t valid_length_at(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  const size_t n = s.size() - i;
  auto cont = [&](size_t k) { return (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) return n >= 2 && cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 3 || !cont(1) || !cont(2)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xE0 && b1 < 0xA0) return 0;   // overlong
    if (b0 == 0xED && b1 >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
    if (b0 == 0xF4 && b1 >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Byte index of the first byte that is not part of well-formed UTF-8, or npos.
inline size_t first_invalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path, eight bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = valid_length_at(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// Decodes the code point at s[i] of valid UTF-8; stores its length in *len.
inline uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const size_t n = char_length(b0);
  *len = n;
  if (n == 1) return b0;
  uint32_t cp = b0 & (0xFF >> (n + 1));
  for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
  return cp;
}

inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes bytes as UTF-8, replacing each maximal invalid subpart by U+FFFD (the WHATWG / Unicode
// "best practice" used by TextDecoder and Rust's from_utf8_lossy).
inline std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_length_at(s, i);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    // Maximal subpart: the lead byte plus as many continuation bytes as stay on a valid path.
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t k = 1;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 2;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 3;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    while (need > 0 && i + k < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < lo || b > hi) break;
      lo = 0x80;
      hi = 0xBF;
      ++k;
      --need;
    }
    out += "\xEF\xBF\xBD";
    i += k;
  }
  return out;
}

// JavaScript's whitespace (\s, String.prototype.trim): what the reference tokenizer uses.
inline bool is_js_whitespace(uint32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace ringtune::utf8
