// Sample order and packing; see packing.h.
#include "src/train/packing.h"

#include <algorithm>

#include <torch/torch.h>

#include "src/error.h"

namespace ringtune {

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

std::vector<int64_t> sample_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle) return order;
  uint64_t state = seed * 0x100000001B3ull ^ static_cast<uint64_t>(epoch + 1) * 0xC2B2AE3D27D4EB4Full;
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates with an unbiased bounded draw
    const uint64_t bound = static_cast<uint64_t>(i + 1);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = splitmix64(state);
    while (r >= limit);
    std::swap(order[i], order[static_cast<int64_t>(r % bound)]);
  }
  return order;
}

std::vector<PackedSequence> pack_sequences(const PreparedDataset& data,
                                           const std::vector<int64_t>& order,
                                           int64_t context_length, bool packing, int32_t pad_id) {
  std::vector<PackedSequence> out;
  auto fresh = [&] {
    PackedSequence s;
    s.tokens.reserve(context_length);
    out.push_back(std::move(s));
  };
  for (const int64_t idx : order) {
    const int64_t begin = data.offsets[idx], end = data.offsets[idx + 1], len = end - begin;
    if (len > context_length)
      throw Error("sample " + std::to_string(idx) + " has " + std::to_string(len) +
                  " tokens > context_length " + std::to_string(context_length) +
                  " (the prepared data was made for a longer context; run prepare again)");
    if (len == 0) continue;
    if (out.empty() || !packing ||
        static_cast<int64_t>(out.back().tokens.size()) + len > context_length)
      fresh();
    PackedSequence& s = out.back();
    const int32_t segment = static_cast<int32_t>(s.samples.size());
    s.samples.push_back(idx);
    for (int64_t t = begin; t < end; ++t) {
      s.tokens.push_back(data.ids[t]);
      s.positions.push_back(static_cast<int32_t>(t - begin));
      s.segments.push_back(segment);
      const bool has_target = t + 1 < end && data.loss_mask[t + 1];
      s.labels.push_back(has_target ? data.ids[t + 1] : static_cast<int32_t>(kIgnoreLabel));
      s.supervised += has_target ? 1 : 0;
    }
  }
  for (auto& s : out) {
    s.used = static_cast<int64_t>(s.tokens.size());
    while (static_cast<int64_t>(s.tokens.size()) < context_length) {
      s.tokens.push_back(pad_id);
      s.positions.push_back(0);
      s.segments.push_back(-1);
      s.labels.push_back(static_cast<int32_t>(kIgnoreLabel));
    }
  }
  return out;
}

std::vector<PackedSequence> pack_in_file_order(const PreparedDataset& data, int64_t context_length, bool packing,
                                               int32_t pad_id) {
  return pack_sequences(data, sample_order(data.size(), 0, 0, /*shuffle=*/false), context_length, packing, pad_id);
}

int64_t SequenceBatch::length() const {
  if (rows.empty()) return 0;
  if (!pad_to_longest) return static_cast<int64_t>(rows[0]->tokens.size());
  int64_t l = 1;
  for (const PackedSequence* r : rows) l = std::max(l, r->used);
  return l;
}

std::vector<at::Tensor> SequenceBatch::tensors() const {
  const int64_t b = static_cast<int64_t>(rows.size());
  const int64_t l = length();
  auto make = [&](auto field) {
    auto t = torch::empty({b, l}, torch::kInt64);
    auto* p = t.data_ptr<int64_t>();
    for (int64_t i = 0; i < b; ++i) {
      const auto& v = rows[i]->*field;
      for (int64_t j = 0; j < l; ++j) p[i * l + j] = v[j];
    }
    return t;
  };
  return {make(&PackedSequence::tokens), make(&PackedSequence::positions),
          make(&PackedSequence::segments), make(&PackedSequence::labels)};
}

}  // namespace ringtune
