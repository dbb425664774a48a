// Loss masks from token start offsets and supervised byte spans; causal-LM tokenization.
#include "src/data/loss_mask.h"

#include <algorithm>

namespace ringtune {

int64_t TokenizedSample::supervised_count() const {
  return static_cast<int64_t>(std::count(loss_mask.begin(), loss_mask.end(), uint8_t{1}));
}

namespace {

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool inside(const std::vector<ByteSpan>& spans, int64_t pos) {
  // spans are sorted and disjoint: find the first span ending after pos.
  auto it = std::upper_bound(spans.begin(), spans.end(), pos,
                             [](int64_t p, const ByteSpan& s) { return p < s.end; });
  return it != spans.end() && it->begin <= pos;
}

}  // namespace

std::vector<uint8_t> loss_mask_from_offsets(const std::vector<int64_t>& offsets, std::string_view text,
                                            const std::vector<ByteSpan>& supervised) {
  const int64_t size = static_cast<int64_t>(text.size());
  std::vector<uint8_t> mask(offsets.size(), 0);
  size_t next = 0;  // first token whose start is beyond the current token's start
  for (size_t i = 0; i < offsets.size(); ++i) {
    const int64_t start = offsets[i];
    if (next <= i) next = i + 1;
    while (next < offsets.size() && offsets[next] <= start) ++next;
    const int64_t end = std::min(size, next < offsets.size() ? offsets[next] : size);
    int64_t pos = start;
    while (pos < end && ascii_space(text[static_cast<size_t>(pos)])) ++pos;
    if (pos >= end) pos = start;
    mask[i] = inside(supervised, pos) ? 1 : 0;
  }
  return mask;
}

namespace {

// Ids and span mask, before the first-token rule.
TokenizedSample encode_with_spans(const Tokenizer& tokenizer, const RenderedPrompt& rendered) {
  Encoding enc = tokenizer.encode(rendered.segments());
  if (enc.offsets.size() != enc.ids.size())
    throw Error("tokenizer " + tokenizer.kind() + " returned " + std::to_string(enc.offsets.size()) +
                " offsets for " + std::to_string(enc.ids.size()) + " ids");
  TokenizedSample out;
  out.loss_mask = loss_mask_from_offsets(enc.offsets, rendered.text, rendered.supervised);
  out.ids = std::move(enc.ids);
  return out;
}

}  // namespace

TokenizedSample tokenize_rendered(const Tokenizer& tokenizer, const RenderedPrompt& rendered) {
  TokenizedSample out = encode_with_spans(tokenizer, rendered);
  if (!out.loss_mask.empty()) out.loss_mask[0] = 0;
  return out;
}

TokenizedSample tokenize_causal_text(const Tokenizer& tokenizer, std::string_view text, bool allow_special,
                                     size_t supervised_from) {
  const SpecialTokenIds& special = tokenizer.special_ids();
  TokenizedSample out;
  if (special.bos >= 0) {
    out.ids.push_back(special.bos);
    out.loss_mask.push_back(0);
  }
  const Encoding enc = tokenizer.encode(std::vector<TextSegment>{{text, allow_special}});
  const std::vector<uint8_t> mask =
      supervised_from == 0
          ? std::vector<uint8_t>(enc.ids.size(), 1)
          : loss_mask_from_offsets(enc.offsets, text,
                                   {ByteSpan{static_cast<int64_t>(supervised_from), static_cast<int64_t>(text.size())}});
  out.ids.insert(out.ids.end(), enc.ids.begin(), enc.ids.end());
  out.loss_mask.insert(out.loss_mask.end(), mask.begin(), mask.end());
  if (special.eos >= 0) {
    out.ids.push_back(special.eos);
    out.loss_mask.push_back(1);
  }
  if (!out.loss_mask.empty()) out.loss_mask[0] = 0;
  return out;
}

TokenizedSample tokenize_causal_rendered(const Tokenizer& tokenizer, const RenderedPrompt& rendered,
                                         bool format_has_bos) {
  const SpecialTokenIds& special = tokenizer.special_ids();
  TokenizedSample body = encode_with_spans(tokenizer, rendered);
  TokenizedSample out;
  if (!format_has_bos && special.bos >= 0 && (body.ids.empty() || body.ids[0] != special.bos)) {
    out.ids.push_back(special.bos);
    out.loss_mask.push_back(0);
  }
  out.ids.insert(out.ids.end(), body.ids.begin(), body.ids.end());
  out.loss_mask.insert(out.loss_mask.end(), body.loss_mask.begin(), body.loss_mask.end());
  if (special.eos >= 0) {
    out.ids.push_back(special.eos);
    out.loss_mask.push_back(1);
  }
  if (!out.loss_mask.empty()) out.loss_mask[0] = 0;
  return out;
}

}  // namespace ringtune
