// Unicode canonical normalization (NFC, NFD); see unicode_norm.h. Follows the algorithm of
// UAX #15: full canonical decomposition, canonical ordering of combining marks, then (for NFC)
// canonical composition of unblocked pairs. Hangul syllables are (de)composed arithmetically.
#include "src/tokenizer/unicode_norm.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/utf8.h"

namespace ringtune {

namespace {

struct CccRange {
  uint32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  uint32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {
  uint32_t first, second, composite;
};

#include "src/tokenizer/unicode_tables.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

int combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = kCccRanges + sizeof(kCccRanges) / sizeof(kCccRanges[0]);
  const auto* it = std::upper_bound(kCccRanges, end, cp,
                                    [](uint32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCccRanges) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

struct CodePoint {
  uint32_t cp;
  int64_t source;
};

void decompose(uint32_t cp, int64_t source, std::vector<CodePoint>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back({kLBase + s / kNCount, source});
    out.push_back({kVBase + (s % kNCount) / kTCount, source});
    if (s % kTCount != 0) out.push_back({kTBase + s % kTCount, source});
    return;
  }
  if (cp >= 0xC0) {
    const auto* end = kDecompositions + sizeof(kDecompositions) / sizeof(kDecompositions[0]);
    const auto* it = std::lower_bound(kDecompositions, end, cp,
                                      [](const Decomposition& d, uint32_t c) { return d.cp < c; });
    if (it != end && it->cp == cp) {
      for (int k = 0; k < it->length; ++k) out.push_back({kDecompData[it->offset + k], source});
      return;
    }
  }
  out.push_back({cp, source});
}

// The primary composite of (a, b), or 0.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* end = kCompositions + sizeof(kCompositions) / sizeof(kCompositions[0]);
  using Key = std::pair<uint32_t, uint32_t>;
  const auto* it = std::lower_bound(kCompositions, end, Key(a, b),
                                    [](const Composition& c, const Key& k) {
                                      return c.first < k.first ||
                                             (c.first == k.first && c.second < k.second);
                                    });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

NormalizedText unicode_normalize(NormalizedText in, bool compose) {
  // ASCII (below U+00C0 in fact: nothing there decomposes or combines) is left as it is.
  bool trivial = true;
  for (const char c : in.text) {
    if (static_cast<unsigned char>(c) >= 0xC3) {
      trivial = false;
      break;
    }
  }
  if (trivial) return in;

  std::vector<CodePoint> cps;
  cps.reserve(in.text.size());
  for (size_t i = 0; i < in.text.size();) {
    size_t len = 0;
    const uint32_t cp = utf8::decode_at(in.text, i, &len);
    decompose(cp, in.source_at(i), cps);
    i += len;
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::vector<int> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i].cp);
  for (size_t i = 1; i < cps.size(); ++i) {
    if (ccc[i] == 0) continue;
    for (size_t j = i; j > 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(cps[j - 1], cps[j]);
      std::swap(ccc[j - 1], ccc[j]);
    }
  }
  if (compose && !cps.empty()) {
    size_t out = 0;
    size_t starter = 0;
    bool have_starter = ccc[0] == 0;
    int last_class = have_starter ? 0 : 256;
    out = 1;
    for (size_t i = 1; i < cps.size(); ++i) {
      const int cc = ccc[i];
      if (have_starter && (last_class < cc || last_class == 0)) {
        if (const uint32_t c = compose_pair(cps[starter].cp, cps[i].cp)) {
          cps[starter].cp = c;
          continue;
        }
      }
      if (cc == 0) {
        starter = out;
        have_starter = true;
      }
      last_class = cc;
      cps[out] = cps[i];
      ccc[out] = cc;
      ++out;
    }
    cps.resize(out);
  }
  NormalizedText result;
  result.base = in.base;
  result.end = in.end;
  result.text.reserve(in.text.size() + 8);
  result.source.reserve(in.text.size() + 8);
  int64_t floor = cps.empty() ? in.end : cps.front().source;
  for (const CodePoint& c : cps) {
    const size_t before = result.text.size();
    utf8::append(result.text, c.cp);
    floor = std::max(floor, c.source);  // reordering may move marks back: keep offsets monotone
    result.source.insert(result.source.end(), result.text.size() - before, floor);
  }
  return result;
}

}  // namespace ringtune
