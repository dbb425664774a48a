// Strings of the template engine that remember where their bytes came from: each byte is either
// template text (the template's literals, or values computed by the template) or part of the
// content of message k of the conversation. Concatenation, slicing, trimming, splitting, replacing
// and JSON escaping keep the origin of every byte; transformations that cannot map bytes (case
// changes that alter lengths) give the result the input's origin when it has a single one. The
// chat-template renderer uses the origins to tokenize message content without parsing special
// tokens and to place the loss on assistant content (src/data/chat_template.h).
// defines: TString, kTemplateOrigin
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringtune::jinja {

constexpr int32_t kTemplateOrigin = -1;

class TString {
 public:
  struct Span {  // bytes [begin, end) came from message `origin` (>= 0)
    uint32_t begin, end;
    int32_t origin;
  };

  TString() = default;
  TString(std::string text, int32_t origin = kTemplateOrigin);  // NOLINT: implicit from text
  TString(const char* text) : TString(std::string(text)) {}     // NOLINT

  const std::string& str() const { return s_; }
  size_t size() const { return s_.size(); }
  bool empty() const { return s_.empty(); }
  const std::vector<Span>& spans() const { return spans_; }
  // The origin of byte i.
  int32_t origin_at(size_t i) const;
  // The single origin of every byte, or kTemplateOrigin when mixed or empty.
  int32_t uniform_origin() const;

  void append(const TString& other);
  void append(std::string_view text, int32_t origin);
  void append(const std::string& text) { append(std::string_view(text), kTemplateOrigin); }  // template text
  void append(const char* text) { append(std::string_view(text), kTemplateOrigin); }
  TString substr(size_t pos, size_t n = std::string::npos) const;
  // Bytes at the given positions, in that order (e.g. a reversed or stepped slice).
  TString pick(const std::vector<size_t>& positions) const;
  // A new text whose origin is this one's uniform origin (kTemplateOrigin when mixed).
  TString derived(std::string text) const;
  // `text` in place of this one's bytes: the same origins byte for byte when it has the same
  // length (e.g. ASCII case changes), else derived(text).
  TString with_text(std::string text) const;

  bool operator==(const TString& o) const { return s_ == o.s_; }

 private:
  std::string s_;
  std::vector<Span> spans_;  // sorted, disjoint, non-empty; bytes outside them are template text
};

}  // namespace ringtune::jinja
