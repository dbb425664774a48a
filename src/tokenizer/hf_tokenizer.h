// Hugging Face `tokenizer.json` tokenizer (BPE model), implemented here: added tokens, then per
// text section the normalizer, pre-tokenizer and BPE model; decoding through the decoder chain.
// Reference for every behaviour: the JS port of HF tokenizers (@lenml/tokenizers), whose ids the
// golden tests compare against (tests/golden/tokenizers/).
//
// Supported: model BPE (merges as "a b" or [a, b], byte_fallback, unk_token, fuse_unk,
// ignore_merges); normalizers Prepend, Replace, NFC, NFD, Sequence; pre-tokenizers Split,
// ByteLevel (last in a Sequence), Metaspace, Sequence; decoders ByteLevel, Replace, ByteFallback,
// Fuse, Strip, Metaspace, Sequence. Anything else is an InputError naming file and component.
//
// Where we knowingly differ from the reference:
// - Special added tokens match only in allow_special segments (the reference always matches).
//   Non-special added tokens match everywhere, as in the reference (JS and Rust alike).
// - Added tokens' single_word and normalized flags are read but not acted on (as in the JS port):
//   spellings match anywhere in the raw text; lstrip/rstrip trim JavaScript whitespace.
// - Split behaviours MergedWithPrevious/MergedWithNext/Contiguous and `invert` follow the Rust
//   library (the JS port treats them as Isolated, and with invert keeps only the matches).
//   Metaspace honours `split` and `prepend_scheme` as the Rust library does (the JS port ignores
//   `split` and reads only the legacy `add_prefix_space`); the Metaspace decoder strips the first
//   space unless prepend_scheme is "never".
// - Regexes: `\s` is JavaScript's set, as in the reference; `\d`, `\w`, `\b` are Unicode-aware
//   (PCRE2 UCP, like Rust; ASCII in JS). PCRE2 10.42's tables are Unicode 14: characters first
//   assigned in Unicode 15/16 are not letters/digits to us (none occur in the golden strings).
// - Every merge's parts and result must be vocabulary entries (the Rust rule; JS is lenient).
// - decode() never applies clean_up_tokenization_spaces and skips ids the vocabulary lacks.
// - Text must be valid UTF-8 (InputError otherwise).
// defines: HfTokenizer
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "src/tokenizer/added_vocab.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

class Normalizer;
class PreTokenizer;
class BpeModel;
class Decoder;

class HfTokenizer : public Tokenizer {
 public:
  // Reads and parses `path` (a tokenizer.json). Throws InputError naming the file.
  static std::unique_ptr<HfTokenizer> load(const std::string& path);
  // Builds from parsed JSON; `file` names the source in messages.
  HfTokenizer(const nlohmann::json& root, const std::string& file);
  ~HfTokenizer() override;

  Encoding encode(const std::vector<TextSegment>& segments) const override;
  using Tokenizer::encode;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> token_to_id(std::string_view piece) const override;
  std::string id_to_piece(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::string kind() const override;

  // For load_tokenizer: tokens from tokenizer_config.json's added_tokens_decoder, and the
  // special ids it resolved.
  void add_token(const AddedToken& token);
  void set_special_ids(const SpecialTokenIds& ids) { special_ = ids; }
  // The model's unk token id (-1 if none).
  int32_t model_unk_id() const;

 private:
  std::string file_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocab added_;
  std::unordered_set<std::string> added_contents_;  // for the ByteLevel decoder
};

}  // namespace ringtune
