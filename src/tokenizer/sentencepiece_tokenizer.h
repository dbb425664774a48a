// SentencePiece `.model` tokenizer through libsentencepiece (via SpmProcessor). Plain text is
// encoded exactly as sentencepiece's own encode() (no BOS/EOS); in allow_special segments the spellings of control
// pieces (<s>, </s>) and of the unknown piece (<unk>) become their ids and the text between them
// is encoded as separate strings. Tokens from tokenizer_config.json's added_tokens_decoder that
// the model lacks can be added on top.
// defines: SentencePieceTokenizer
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "src/tokenizer/added_vocab.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

class SpmProcessor;  // src/tokenizer/spm_processor.h

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Throws InputError naming the file if it is not a SentencePiece model.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path);
  ~SentencePieceTokenizer() override;

  Encoding encode(const std::vector<TextSegment>& segments) const override;
  using Tokenizer::encode;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> token_to_id(std::string_view piece) const override;
  std::string id_to_piece(int32_t id) const override;
  bool is_special(int32_t id) const override;
  std::string kind() const override { return "sentencepiece"; }

  // For load_tokenizer. A token whose id is a model piece must spell that piece.
  void add_token(const AddedToken& token);
  void set_special_ids(const SpecialTokenIds& ids) { special_ = ids; }
  int32_t piece_count() const;

 private:
  SentencePieceTokenizer();
  std::string file_;
  std::unique_ptr<SpmProcessor> sp_;
  AddedVocab added_;
};

}  // namespace ringtune
