// A byte-level stand-in Tokenizer for data-path tests: one token per byte (ids 0..255), and each
// listed special spelling as one token (ids 256..) matched only inside allow_special segments,
// exactly the contract of Tokenizer::encode. Offsets are each token's first byte.
#pragma once
#include <string>
#include <vector>

#include "src/tokenizer/tokenizer.h"

namespace ringtune::testing {

class FakeTokenizer : public Tokenizer {
 public:
  explicit FakeTokenizer(std::vector<std::string> specials, std::string bos = "", std::string eos = "")
      : specials_(std::move(specials)) {
    if (!bos.empty()) special_.bos = *token_to_id(bos);
    if (!eos.empty()) special_.eos = *token_to_id(eos);
  }

  // Llama 3, Llama 2/Mistral and ChatML control spellings.
  static std::vector<std::string> all_specials() {
    return {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>",        "<s>",             "</s>",                "<|im_start|>",
            "<|im_end|>"};
  }

  Encoding encode(const std::vector<TextSegment>& segments) const override {
    Encoding out;
    int64_t base = 0;
    for (const TextSegment& seg : segments) {
      size_t i = 0;
      while (i < seg.text.size()) {
        bool matched = false;
        if (seg.allow_special) {
          for (size_t k = 0; k < specials_.size(); ++k) {
            if (seg.text.compare(i, specials_[k].size(), specials_[k]) == 0) {
              out.ids.push_back(static_cast<int32_t>(256 + k));
              out.offsets.push_back(base + static_cast<int64_t>(i));
              i += specials_[k].size();
              matched = true;
              break;
            }
          }
        }
        if (!matched) {
          out.ids.push_back(static_cast<unsigned char>(seg.text[i]));
          out.offsets.push_back(base + static_cast<int64_t>(i));
          ++i;
        }
      }
      base += static_cast<int64_t>(seg.text.size());
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 256) out += static_cast<char>(id);
      else if (!skip_special) out += specials_.at(static_cast<size_t>(id - 256));
    }
    return out;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(256 + specials_.size()); }
  std::optional<int32_t> token_to_id(std::string_view piece) const override {
    for (size_t k = 0; k < specials_.size(); ++k)
      if (specials_[k] == piece) return static_cast<int32_t>(256 + k);
    if (piece.size() == 1) return static_cast<unsigned char>(piece[0]);
    return std::nullopt;
  }
  std::string id_to_piece(int32_t id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : specials_.at(static_cast<size_t>(id - 256));
  }
  bool is_special(int32_t id) const override { return id >= 256; }
  std::string kind() const override { return "fake-bytes"; }

 private:
  std::vector<std::string> specials_;
};

}  // namespace ringtune::testing
