// GPT-2's byte-level alphabet: each of the 256 byte values is written as one printable Unicode
// character (printable Latin-1 bytes stand for themselves, the rest map to U+0100..U+0143).
// Byte-level BPE vocabularies (Llama 3, Qwen2, GPT-2) are stored in this alphabet.
// defines: ByteLevelAlphabet, byte_level_alphabet
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "src/utf8.h"

namespace ringtune {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet() {
    for (int i = 0; i < 512; ++i) char_to_byte_[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256 + extra++;
      byte_to_char_[b] = cp;
      char_to_byte_[cp] = b;
    }
  }
  uint32_t char_of(uint8_t byte) const { return byte_to_char_[byte]; }
  // The byte a character stands for, or -1.
  int byte_of(uint32_t cp) const { return cp < 512 ? char_to_byte_[cp] : -1; }

  // Converts a string written in the alphabet back to raw bytes. Returns false if some
  // character is not in the alphabet.
  bool to_bytes(std::string_view s, std::string* out) const {
    out->clear();
    for (size_t i = 0; i < s.size();) {
      size_t len = 0;
      if (utf8::valid_length_at(s, i) == 0) return false;
      const int b = byte_of(utf8::decode_at(s, i, &len));
      if (b < 0) return false;
      *out += static_cast<char>(b);
      i += len;
    }
    return true;
  }

  // Writes raw bytes in the alphabet.
  std::string from_bytes(std::string_view bytes) const {
    std::string out;
    for (const char c : bytes) utf8::append(out, char_of(static_cast<uint8_t>(c)));
    return out;
  }

 private:
  uint32_t byte_to_char_[256];
  int16_t char_to_byte_[512];
};

inline const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

}  // namespace ringtune
