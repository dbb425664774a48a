// Added-token matching; see added_vocab.h.
#include "src/tokenizer/added_vocab.h"

#include <algorithm>

#include "src/utf8.h"

namespace ringtune {

std::vector<TextSpan> join_segments(const std::vector<TextSegment>& segments, std::string& text) {
  std::vector<TextSpan> allowed;
  for (const TextSegment& seg : segments) {
    if (seg.allow_special && !seg.text.empty()) {
      if (!allowed.empty() && allowed.back().end == text.size()) {
        allowed.back().end += seg.text.size();
      } else {
        allowed.push_back({text.size(), text.size() + seg.text.size()});
      }
    }
    text.append(seg.text.data(), seg.text.size());
  }
  return allowed;
}

namespace {

// Bytes of JavaScript whitespace at the end / start of text[b, e) (String.prototype.trim).
size_t trailing_space(std::string_view text, size_t b, size_t e) {
  size_t cut = e;
  while (cut > b) {
    size_t start = cut - 1;
    while (start > b && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    if (!utf8::is_js_whitespace(utf8::decode_at(text, start, &len))) break;
    cut = start;
  }
  return e - cut;
}

size_t leading_space(std::string_view text, size_t b, size_t e) {
  size_t cut = b;
  while (cut < e) {
    size_t len = 0;
    if (!utf8::is_js_whitespace(utf8::decode_at(text, cut, &len))) break;
    cut += len;
  }
  return cut - b;
}

}  // namespace

void AddedVocab::add(const AddedToken& token) {
  if (token.content.empty()) return;
  if (trie_.empty()) trie_.emplace_back();
  const auto it = by_content_.find(token.content);
  if (it != by_content_.end()) {  // same spelling: replace in place (the trie path is the same)
    by_id_.erase(tokens_[it->second].id);
    tokens_[it->second] = token;
    by_id_[token.id] = it->second;
  } else {
    by_content_[token.content] = tokens_.size();
    by_id_[token.id] = tokens_.size();
    tokens_.push_back(token);
    insert_into_trie(tokens_.size() - 1);
  }
  max_id_ = std::max(max_id_, token.id);
}

void AddedVocab::insert_into_trie(size_t index) {
  const std::string& content = tokens_[index].content;
  int32_t node = 0;
  for (const char c : content) {
    const auto byte = static_cast<uint8_t>(c);
    int32_t next = child(node, byte);
    if (next < 0) {
      next = static_cast<int32_t>(trie_.size());
      trie_[node].children.emplace_back(byte, next);
      trie_.emplace_back();
    }
    node = next;
  }
  trie_[node].token = static_cast<int32_t>(index);
  starts_[static_cast<uint8_t>(content[0])] = true;
}

int32_t AddedVocab::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, n] : trie_[node].children) {
    if (b == byte) return n;
  }
  return -1;
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<TextSection> AddedVocab::split(std::string_view text,
                                           const std::vector<TextSpan>& allowed) const {
  std::vector<TextSection> sections;
  if (tokens_.empty()) {
    if (!text.empty()) sections.push_back({0, text.size(), -1});
    return sections;
  }
  size_t start = 0;  // start of the pending text section
  size_t range = 0;  // first allowed range that does not end before the scan position
  size_t i = 0;
  while (i < text.size()) {
    if (!starts_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    while (range < allowed.size() && allowed[range].end <= i) ++range;
    const bool in_allowed = range < allowed.size() && allowed[range].begin <= i;
    // Longest token spelled at i that may match here.
    int32_t best = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      const int32_t t = trie_[node].token;
      if (t < 0) continue;
      if (tokens_[t].special && !(in_allowed && j + 1 <= allowed[range].end)) continue;
      best = t;
      best_end = j + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    if (i > start) sections.push_back({start, i, -1});
    sections.push_back({i, best_end, tokens_[best].id});
    i = best_end;
    start = i;
  }
  if (start < text.size()) sections.push_back({start, text.size(), -1});

  // lstrip / rstrip: trim the whitespace of the neighbouring text sections.
  for (size_t k = 0; k < sections.size(); ++k) {
    if (sections[k].added_id < 0) continue;
    const AddedToken* tok = by_id(sections[k].added_id);
    if (tok->lstrip && k > 0 && sections[k - 1].added_id < 0) {
      TextSection& prev = sections[k - 1];
      prev.end -= trailing_space(text, prev.begin, prev.end);
    }
    if (tok->rstrip && k + 1 < sections.size() && sections[k + 1].added_id < 0) {
      TextSection& next = sections[k + 1];
      next.begin += leading_space(text, next.begin, next.end);
    }
  }
  return sections;
}

}  // namespace ringtune
