// Tokenizer interface shared by SentencePiece `.model` files and Hugging Face `tokenizer.json`.
// defines: Tokenizer, TextSegment, Encoding, load_tokenizer
//
// Special tokens come only from prompt templates: encode() takes the text as segments, each saying
// whether spellings of special/added tokens inside it may become their ids. Template text is
// encoded with allow_special = true, message content with allow_special = false, so a user message
// that spells "<|eot_id|>" is encoded as ordinary text and can never close a turn.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringtune {

struct TextSegment {
  std::string_view text;
  bool allow_special = false;  // spellings of special/added tokens here map to their ids
};

struct Encoding {
  std::vector<int32_t> ids;
  // Byte offset into the concatenated text where each token starts (tokens made by the
  // tokenizer itself, such as a prepended "▁", point at the offset of the text that follows).
  std::vector<int64_t> offsets;
};

struct SpecialTokenIds {
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;  // -1: the tokenizer has none
  // Every id that ends a sequence: `eos` first, then the others config.json lists
  // (Llama 3 Instruct: <|end_of_text|>, <|eom_id|>, <|eot_id|>). Empty if eos is -1.
  std::vector<int32_t> eos_ids;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes the concatenation of the segments exactly as the reference library encodes the
  // whole string (no BOS/EOS added), except that special/added tokens are matched only inside
  // segments with allow_special.
  virtual Encoding encode(const std::vector<TextSegment>& segments) const = 0;

  // Convenience: one segment.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const {
    return encode(std::vector<TextSegment>{{text, allow_special}}).ids;
  }

  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view piece) const = 0;
  virtual std::string id_to_piece(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  const SpecialTokenIds& special_ids() const { return special_; }
  // Short description of the tokenizer kind, e.g. "hf-bpe(byte-level)" or "sentencepiece".
  virtual std::string kind() const = 0;

 protected:
  SpecialTokenIds special_;
};

// Loads `path`: a `tokenizer.model` (SentencePiece), a `tokenizer.json`, or a model directory
// holding one of them (tokenizer.json preferred) plus optional `tokenizer_config.json` giving
// bos/eos/pad/unk. Throws InputError naming the file and the unsupported component or bad field.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace ringtune
