// Text being tokenized together with, for each of its bytes, the byte offset in the caller's
// original text it came from, so that normalizers and pre-tokenizers that insert or replace
// characters (Prepend, Replace, Metaspace) still let every token point back into the input.
// defines: NormalizedText, TextSpan, NormalizedBuilder
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringtune {

struct NormalizedText {
  std::string text;
  // source[i]: original offset of text[i]. Empty means the identity mapping source[i] = base + i
  // (the common case: no normalizer touched the text).
  std::vector<int64_t> source;
  int64_t base = 0;
  // Original offset just past the text (where an empty tail or an appended byte points).
  int64_t end = 0;

  int64_t source_at(size_t i) const {
    if (i >= text.size()) return end;
    return source.empty() ? base + static_cast<int64_t>(i) : source[i];
  }
};

// A piece of a NormalizedText, in bytes [begin, end).
struct TextSpan {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};

// Accumulates a new NormalizedText from pieces of an old one and inserted strings.
class NormalizedBuilder {
 public:
  explicit NormalizedBuilder(const NormalizedText& from) : from_(from) {
    out_.text.reserve(from.text.size() + 16);
    out_.source.reserve(from.text.size() + 16);
    out_.end = from.end;
  }
  // Copies from.text[begin, end) with its offsets.
  void copy(size_t begin, size_t end) {
    out_.text.append(from_.text, begin, end - begin);
    for (size_t i = begin; i < end; ++i) out_.source.push_back(from_.source_at(i));
  }
  // Inserts `s`, every byte of it pointing at original offset `source`.
  void insert(std::string_view s, int64_t source) {
    out_.text.append(s.data(), s.size());
    out_.source.insert(out_.source.end(), s.size(), source);
  }
  size_t size() const { return out_.text.size(); }
  const std::string& text() const { return out_.text; }
  NormalizedText finish() { return std::move(out_); }

 private:
  const NormalizedText& from_;
  NormalizedText out_;
};

}  // namespace ringtune
