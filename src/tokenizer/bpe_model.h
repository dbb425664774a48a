// The BPE model of a tokenizer.json: vocabulary, merges ranked by position, byte-level or
// character-level initial symbols, byte_fallback, unk_token, fuse_unk and ignore_merges.
// Merging uses a priority queue keyed by (rank, position); results per piece are cached.
// defines: BpeModel, BpeToken
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/tokenizer/hash_tables.h"
#include "src/tokenizer/normalized_text.h"

namespace ringtune {

// One token of a piece: its id and the byte offset within the piece where it starts.
struct BpeToken {
  int32_t id;
  uint32_t start;
};

class BpeModel {
 public:
  // `config` is the "model" object of tokenizer.json. With `byte_level`, vocabulary entries are
  // read in GPT-2's byte alphabet and pieces are split into bytes, not characters.
  BpeModel(const nlohmann::json& config, const std::string& file, bool byte_level);

  // Encodes the spans of `text` (one section of the input) and appends ids and original offsets.
  // Consecutive unknown tokens are fused into one when fuse_unk is set.
  void encode(const NormalizedText& text, const std::vector<TextSpan>& spans,
              std::vector<int32_t>& ids, std::vector<int64_t>& offsets) const;

  // Encodes one piece (raw bytes); appends its tokens.
  void encode_piece(std::string_view piece, std::vector<BpeToken>& out) const;
  // True when pieces are cut at word starts (before "▁") to cache words; see bpe_model.cpp.
  bool splits_words() const { return split_words_; }

  // Vocabulary entries as written in the file.
  int32_t token_to_id(std::string_view token) const { return vocab_.find(token); }
  // "" for ids the vocabulary does not define.
  const std::string& id_to_token(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t unk_id() const { return unk_id_; }
  const std::string& unk_token() const { return unk_token_; }
  bool byte_level() const { return byte_level_; }

 private:
  void merge_symbols(std::string_view piece, uint32_t base, std::vector<BpeToken>& out) const;
  void encode_word(std::string_view word, uint32_t base, std::vector<BpeToken>& out) const;

  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool split_words_ = false;
  std::string unk_token_;
  int32_t unk_id_ = -1;
  std::vector<std::string> tokens_;  // id -> entry as written
  StringIdMap vocab_;                // entry as written -> id
  StringIdMap bpe_vocab_;            // entry as raw bytes (byte-level) or as written -> id
  std::array<int32_t, 256> byte_ids_{};           // byte-level: byte -> id of its symbol
  std::array<int32_t, 256> byte_fallback_ids_{};  // "<0xXX>" -> id
  PairMergeMap merges_;

  // Cache of piece -> tokens, sharded to keep lock contention low between threads.
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<BpeToken>> map;
  };
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 8192;
  static constexpr size_t kMaxCachedPiece = 256;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace ringtune
