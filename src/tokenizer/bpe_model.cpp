// The BPE model of a tokenizer.json; see bpe_model.h.
//
// Merge order matches the reference implementations: repeatedly apply the adjacent pair with the
// lowest merge rank, the leftmost one on ties. Symbols that are not in the vocabulary never merge
// (every merge's parts are vocabulary entries); at the end they become byte-fallback tokens
// <0xXX> (if all are in the vocabulary), else the unk token, else they are dropped.
//
// SentencePiece-style vocabularies (Mistral, Llama 2 as tokenizer.json) have no pre-tokenizer, so
// a whole paragraph is one piece. When no vocabulary entry has a "▁" right after another
// character, no merge can ever join across the start of a word, so the piece is cut before each
// "▁" that follows a different character and the words are merged (and cached) one by one: the
// same tokens, in linear time.
#include "src/tokenizer/bpe_model.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <algorithm>
#include <functional>

#include "src/tokenizer/byte_level.h"
#include "src/tokenizer/hf_json.h"
#include "src/utf8.h"

namespace ringtune {

namespace {

// Splits an old-style merge "a b" at its single space.
bool split_merge(const std::string& line, std::string* a, std::string* b) {
  const size_t sp = line.find(' ');
  if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) return false;
  *a = line.substr(0, sp);
  *b = line.substr(sp + 1);
  return true;
}

constexpr const char* kWordMark = "\xE2\x96\x81";  // ▁ U+2581, 3 bytes

struct Symbol {
  int32_t id;     // -1: not in the vocabulary
  uint32_t start;
  uint32_t len;   // 0: merged away
  int32_t prev, next;
};

struct QueuedMerge {
  int32_t rank;
  int32_t pos;
  int32_t merged_id;
  bool operator>(const QueuedMerge& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loading

BpeModel::BpeModel(const nlohmann::json& config, const std::string& file, bool byte_level)
    : byte_level_(byte_level) {
  JsonContext ctx{file, "model BPE"};
  byte_fallback_ = json_bool_or(config, "byte_fallback", false, ctx);
  fuse_unk_ = json_bool_or(config, "fuse_unk", false, ctx);
  ignore_merges_ = json_bool_or(config, "ignore_merges", false, ctx);
  unk_token_ = json_string_or(config, "unk_token", "", ctx);
  if (const auto it = config.find("dropout"); it != config.end() && !it->is_null()) {
    if (!it->is_number()) ctx.fail("\"dropout\" must be a number or null");
    if (it->get<double>() > 0.0) ctx.fail("BPE dropout is not supported (set \"dropout\": null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!json_string_or(config, key, "", ctx).empty()) {
      ctx.fail(std::string("\"") + key + "\" is not supported");
    }
  }

  const auto& vocab = json_field(config, "vocab", ctx);
  if (!vocab.is_object()) ctx.fail("\"vocab\" must be an object of token -> id");
  vocab_.reserve(vocab.size());
  bpe_vocab_.reserve(vocab.size());
  const ByteLevelAlphabet& alphabet = byte_level_alphabet();
  std::string raw;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      ctx.fail("vocab entry \"" + it.key() + "\" must have an integer id");
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (1 << 24)) ctx.fail("vocab id " + std::to_string(id) + " out of range");
    if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(id + 1);
    tokens_[id] = it.key();
    vocab_.insert(it.key(), static_cast<int32_t>(id));
    if (byte_level_) {
      // Entries outside the byte alphabet can never come out of byte-level merging.
      if (alphabet.to_bytes(it.key(), &raw)) bpe_vocab_.insert(raw, static_cast<int32_t>(id));
    } else {
      bpe_vocab_.insert(it.key(), static_cast<int32_t>(id));
    }
  }
  if (!unk_token_.empty()) unk_id_ = vocab_.find(unk_token_);
  if (!byte_level_ && vocab_.find(kWordMark) >= 0) {
    split_words_ = true;
    for (const std::string& t : tokens_) {
      for (size_t at = t.find(kWordMark, 1); at != std::string::npos;
           at = t.find(kWordMark, at + 3)) {
        if (at < 3 || t.compare(at - 3, 3, kWordMark) != 0) split_words_ = false;
      }
      if (!split_words_) break;
    }
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = byte_level_ ? bpe_vocab_.find(std::string(1, static_cast<char>(b))) : -1;
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_fallback_ids_[b] = vocab_.find(name);
  }

  const auto& merges = json_array(config, "merges", ctx);
  merges_.reserve(merges.size());
  std::string a, b;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    if (m.is_string()) {
      if (!split_merge(m.get<std::string>(), &a, &b)) {
        ctx.fail("merge " + std::to_string(rank) + " \"" + m.get<std::string>() +
                 "\" is not two tokens separated by one space");
      }
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      ctx.fail("merge " + std::to_string(rank) + " must be \"a b\" or [\"a\", \"b\"]");
    }
    const int32_t left = vocab_.find(a), right = vocab_.find(b), merged = vocab_.find(a + b);
    for (const auto& [id, token] : {std::pair<int32_t, const std::string&>(left, a),
                                    std::pair<int32_t, const std::string&>(right, b)}) {
      if (id < 0) {
        ctx.fail("merge " + std::to_string(rank) + ": token \"" + token + "\" is not in the vocab");
      }
    }
    if (merged < 0) {
      ctx.fail("merge " + std::to_string(rank) + ": token \"" + a + b + "\" is not in the vocab");
    }
    merges_.insert(left, right, {static_cast<int32_t>(rank), merged});
  }
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string empty;
  if (id < 0 || id >= size()) return empty;
  return tokens_[id];
}

// ---------------------------------------------------------------------------------------------
// Encoding

void BpeModel::merge_symbols(std::string_view piece, uint32_t base,
                             std::vector<BpeToken>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<QueuedMerge> queue;  // a min-heap on (rank, position)
  symbols.clear();
  if (byte_level_) {
    for (size_t i = 0; i < piece.size(); ++i) {
      symbols.push_back({byte_ids_[static_cast<uint8_t>(piece[i])], static_cast<uint32_t>(i), 1,
                         static_cast<int32_t>(i) - 1, static_cast<int32_t>(i) + 1});
    }
  } else {
    for (size_t i = 0; i < piece.size();) {
      const size_t len = std::min(utf8::char_length(static_cast<uint8_t>(piece[i])),
                                  piece.size() - i);
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back({bpe_vocab_.find(piece.substr(i, len)), static_cast<uint32_t>(i),
                         static_cast<uint32_t>(len), n - 1, n + 1});
      i += len;
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  // Candidate merges, lowest (rank, position) first.
  queue.clear();
  const std::greater<QueuedMerge> later;
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0 || symbols[pos].id < 0 || symbols[next].id < 0) return;
    if (const auto* m = merges_.find(symbols[pos].id, symbols[next].id)) {
      queue.push_back({m->rank, pos, m->merged_id});
      std::push_heap(queue.begin(), queue.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), later);
    const QueuedMerge top = queue.back();
    queue.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const auto* m = (left.id >= 0 && right.id >= 0) ? merges_.find(left.id, right.id) : nullptr;
    if (m == nullptr || m->rank != top.rank) continue;  // stale: a neighbour has changed
    left.id = top.merged_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out.push_back({s.id, base + s.start});
      continue;
    }
    bool have_bytes = byte_fallback_;
    if (have_bytes) {
      for (uint32_t k = 0; k < s.len; ++k) {
        have_bytes =
            have_bytes && byte_fallback_ids_[static_cast<uint8_t>(piece[s.start + k])] >= 0;
      }
    }
    if (have_bytes) {
      for (uint32_t k = 0; k < s.len; ++k) {
        out.push_back(
            {byte_fallback_ids_[static_cast<uint8_t>(piece[s.start + k])], base + s.start + k});
      }
    } else if (unk_id_ >= 0) {
      out.push_back({unk_id_, base + s.start});
    }
  }
}

void BpeModel::encode_piece(std::string_view piece, std::vector<BpeToken>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const int32_t id = bpe_vocab_.find(piece);
    if (id >= 0) {
      out.push_back({id, 0});
      return;
    }
  }
  if (!split_words_) {
    encode_word(piece, 0, out);
    return;
  }
  size_t start = 0;
  for (size_t at = piece.find(kWordMark, 1); at != std::string::npos;
       at = piece.find(kWordMark, at + 3)) {
    if (at >= 3 && piece.compare(at - 3, 3, kWordMark) == 0) continue;  // inside a run of ▁
    encode_word(piece.substr(start, at - start), static_cast<uint32_t>(start), out);
    start = at;
  }
  encode_word(piece.substr(start), static_cast<uint32_t>(start), out);
}

void BpeModel::encode_word(std::string_view word, uint32_t base,
                           std::vector<BpeToken>& out) const {
  if (word.size() >= kMaxCachedPiece) {
    merge_symbols(word, base, out);
    return;
  }
  CacheShard& shard = cache_[hash_bytes(word) % kCacheShards];
  const std::string key(word);
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto it = shard.map.find(key);
    if (it != shard.map.end()) {
      for (const BpeToken& t : it->second) out.push_back({t.id, base + t.start});
      return;
    }
  }
  const size_t first = out.size();
  merge_symbols(word, 0, out);
  std::vector<BpeToken> cached(out.begin() + first, out.end());
  for (size_t i = first; i < out.size(); ++i) out[i].start += base;
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.map.size() >= kCacheEntriesPerShard) shard.map.clear();
  shard.map.emplace(key, std::move(cached));
}

void BpeModel::encode(const NormalizedText& text, const std::vector<TextSpan>& spans,
                      std::vector<int32_t>& ids, std::vector<int64_t>& offsets) const {
  thread_local std::vector<BpeToken> tokens;
  bool previous_unk = false;
  for (const TextSpan& span : spans) {
    tokens.clear();
    encode_piece(std::string_view(text.text.data() + span.begin, span.size()), tokens);
    for (const BpeToken& t : tokens) {
      const bool is_unk = t.id == unk_id_ && unk_id_ >= 0;
      if (fuse_unk_ && is_unk && previous_unk) continue;
      previous_unk = is_unk;
      ids.push_back(t.id);
      offsets.push_back(text.source_at(span.begin + t.start));
    }
  }
}

}  // namespace ringtune
