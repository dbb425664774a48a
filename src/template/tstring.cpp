// Strings with byte origins; see tstring.h.
#include "src/template/tstring.h"

#include <algorithm>

namespace ringtune::jinja {

TString::TString(std::string text, int32_t origin) : s_(std::move(text)) {
  if (origin != kTemplateOrigin && !s_.empty()) spans_.push_back({0, static_cast<uint32_t>(s_.size()), origin});
}

int32_t TString::origin_at(size_t i) const {
  auto it = std::upper_bound(spans_.begin(), spans_.end(), i, [](size_t p, const Span& s) { return p < s.end; });
  return it != spans_.end() && it->begin <= i ? it->origin : kTemplateOrigin;
}

int32_t TString::uniform_origin() const {
  if (spans_.size() != 1 || spans_[0].begin != 0 || spans_[0].end != s_.size()) return kTemplateOrigin;
  return spans_[0].origin;
}

void TString::append(std::string_view text, int32_t origin) {
  if (text.empty()) return;
  const uint32_t begin = static_cast<uint32_t>(s_.size());
  s_.append(text);
  if (origin == kTemplateOrigin) return;
  if (!spans_.empty() && spans_.back().end == begin && spans_.back().origin == origin)
    spans_.back().end = static_cast<uint32_t>(s_.size());
  else
    spans_.push_back({begin, static_cast<uint32_t>(s_.size()), origin});
}

void TString::append(const TString& other) {
  if (other.spans_.empty()) {
    s_.append(other.s_);
    return;
  }
  const uint32_t shift = static_cast<uint32_t>(s_.size());
  s_.append(other.s_);
  for (const Span& sp : other.spans_) {
    const Span moved{sp.begin + shift, sp.end + shift, sp.origin};
    if (!spans_.empty() && spans_.back().end == moved.begin && spans_.back().origin == moved.origin)
      spans_.back().end = moved.end;
    else
      spans_.push_back(moved);
  }
}

TString TString::substr(size_t pos, size_t n) const {
  TString out;
  if (pos >= s_.size()) return out;
  const size_t end = n == std::string::npos ? s_.size() : std::min(s_.size(), pos + n);
  out.s_ = s_.substr(pos, end - pos);
  for (const Span& sp : spans_) {
    const size_t b = std::max<size_t>(sp.begin, pos), e = std::min<size_t>(sp.end, end);
    if (b < e) out.spans_.push_back({static_cast<uint32_t>(b - pos), static_cast<uint32_t>(e - pos), sp.origin});
  }
  return out;
}

TString TString::pick(const std::vector<size_t>& positions) const {
  TString out;
  for (size_t p : positions) out.append(std::string_view(s_).substr(p, 1), origin_at(p));
  return out;
}

TString TString::derived(std::string text) const { return TString(std::move(text), uniform_origin()); }

TString TString::with_text(std::string text) const {
  if (text.size() != s_.size()) return derived(std::move(text));
  TString out;
  out.s_ = std::move(text);
  out.spans_ = spans_;
  return out;
}

}  // namespace ringtune::jinja
