// SpmProcessor: SentencePiece through the isolated ringtune_spm module (see
// src/tokenizer/spm_shim/spm_shim.cpp for why it is loaded with dlopen), with the few calls
// ringtune needs, and spm_train() for the quickstart's tokenizer.
// defines: SpmProcessor, spm_train
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringtune {

class SpmProcessor {
 public:
  // Loads a `.model` file; throws InputError naming the file on failure.
  explicit SpmProcessor(const std::string& model_path);
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  int piece_size() const;
  int piece_to_id(std::string_view piece) const;  // the unk id when absent
  std::string id_to_piece(int id) const;
  bool is_control(int id) const;
  bool is_unknown(int id) const;
  bool is_byte(int id) const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  int unk_id() const;
  // Pieces of `text` as (id, begin byte offset in text).
  std::vector<std::pair<int, size_t>> encode(std::string_view text) const;
  std::string decode(const std::vector<int>& ids) const;

 private:
  std::string path_;
  void* handle_ = nullptr;
};

// SentencePieceTrainer::Train with its flag string ("--input=... --model_prefix=..."); throws
// InputError with sentencepiece's message on failure.
void spm_train(const std::string& args);

}  // namespace ringtune
