// Hugging Face `tokenizer.json` tokenizer (BPE model), implemented here: added tokens, then per
// text section the normalizer, pre-tokenizer and BPE model; decoding through the decoder chain.
// Reference for every behaviour: the JS port of HF tokenizers (@lenml/tokenizers), whose ids the
// golden tests compare against.
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
