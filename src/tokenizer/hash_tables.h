// Flat open-addressing hash tables for the tokenizer hot paths: string -> id lookups without
// allocating a std::string per lookup, and (left id, right id) -> merge lookups for BPE.
// defines: StringIdMap, PairMergeMap, hash_bytes
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ringtune {

// 64-bit hash of a byte string (FNV-1a over 8-byte words, then a final mix).
inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  if (i < s.size()) std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ULL;
  h ^= h >> 32;
  return h;
}

// Maps byte strings to int32 ids. Keys are copied into one arena. Insert keeps the first id for a
// key unless `overwrite` is set.
class StringIdMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    if (cap > slots_.size()) rehash(cap);
  }

  void insert(std::string_view key, int32_t id, bool overwrite = true) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    const uint64_t h = hash_bytes(key);
    size_t i = h & (slots_.size() - 1);
    while (true) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s.offset = static_cast<uint32_t>(arena_.size());
        s.length = static_cast<uint32_t>(key.size());
        s.hash32 = static_cast<uint32_t>(h >> 32);
        s.id = id;
        arena_.append(key.data(), key.size());
        ++size_;
        return;
      }
      if (s.hash32 == static_cast<uint32_t>(h >> 32) && key_of(s) == key) {
        if (overwrite) s.id = id;
        return;
      }
      i = (i + 1) & (slots_.size() - 1);
    }
  }

  // Returns the id or -1.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(key);
    size_t i = h & (slots_.size() - 1);
    while (true) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash32 == static_cast<uint32_t>(h >> 32) && key_of(s) == key) return s.id;
      i = (i + 1) & (slots_.size() - 1);
    }
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t offset = 0, length = 0, hash32 = 0;
    int32_t id = -1;
  };
  std::string_view key_of(const Slot& s) const {
    return std::string_view(arena_.data() + s.offset, s.length);
  }
  void rehash(size_t cap) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      size_t i = hash_bytes(key_of(s)) & (cap - 1);
      while (slots_[i].id >= 0) i = (i + 1) & (cap - 1);
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t size_ = 0;
};

// Maps a pair of token ids to the BPE merge that joins them: its rank (lower merges first) and
// the id of the merged token.
class PairMergeMap {
 public:
  struct Merge {
    int32_t rank = -1;
    int32_t merged_id = -1;
  };

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    if (cap > slots_.size()) rehash(cap);
  }

  // A later insert of the same pair replaces the earlier one (as the reference implementations,
  // which build their rank map from the merges list in order).
  void insert(int32_t left, int32_t right, Merge m) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    const uint64_t key = pack(left, right);
    size_t i = mix(key) & (slots_.size() - 1);
    while (slots_[i].merge.rank >= 0 && slots_[i].key != key) i = (i + 1) & (slots_.size() - 1);
    if (slots_[i].merge.rank < 0) ++size_;
    slots_[i].key = key;
    slots_[i].merge = m;
  }

  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    size_t i = mix(key) & (slots_.size() - 1);
    while (true) {
      const Slot& s = slots_[i];
      if (s.merge.rank < 0) return nullptr;
      if (s.key == key) return &s.merge;
      i = (i + 1) & (slots_.size() - 1);
    }
  }

  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = 0;
    Merge merge;
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  void rehash(size_t cap) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    for (const Slot& s : old) {
      if (s.merge.rank < 0) continue;
      size_t i = mix(s.key) & (cap - 1);
      while (slots_[i].merge.rank >= 0) i = (i + 1) & (cap - 1);
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace ringtune
