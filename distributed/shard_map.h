// How a flat buffer of named tensors is split between ranks (ZeRO stage 1: each rank owns the
// optimizer state of one contiguous range of the flat buffer). The flat buffer holds the tensors
// in the given order, back to back, no padding. Rank r owns [begin(r), end(r)): the total split
// as evenly as possible, the first (total % world) ranks one element more. A tensor may straddle
// ranks; `pieces(r)` lists the parts of tensors inside rank r's range.
// With `align` > 1 (blockwise 8-bit optimizer state, blocks of `align` elements counted from each
// tensor's start) every boundary between ranks is moved to the nearest block boundary of the
// tensor it falls in (or that tensor's end), so no block is split between ranks whatever the
// world size; ranks may then own a little more or less than the even share.
// defines: ShardPiece, ShardMap, named_numels
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ringtune {

struct ShardPiece {
  std::string name;       // tensor name
  int64_t tensor_offset;  // first element of the piece inside the tensor (flattened)
  int64_t flat_offset;    // first element of the piece in the flat buffer
  int64_t numel;
};

class ShardMap {
 public:
  // tensors: (name, numel) in flat-buffer order; world >= 1. std::invalid_argument for a negative
  // numel, a repeated name or world < 1.
  ShardMap(const std::vector<std::pair<std::string, int64_t>>& tensors, int world, int64_t align = 1);

  int world() const { return world_; }
  int64_t total() const { return total_; }
  // Rank r's range [begin(r), end(r)); begin(world()) == total(). std::out_of_range otherwise.
  int64_t begin(int rank) const;
  int64_t end(int rank) const;
  int64_t count(int rank) const { return end(rank) - begin(rank); }
  std::vector<int64_t> counts() const;  // count(r) for every rank
  // Flat offset and numel of each tensor, in order.
  const std::vector<ShardPiece>& tensors() const { return tensors_; }
  // The parts of tensors within rank r's range, in flat order (pieces cover the range exactly).
  std::vector<ShardPiece> pieces(int rank) const;
  // Human-readable table (rank, name, tensor_offset, flat_offset, numel) for logs and inspect.
  std::string describe() const;

 private:
  int world_;
  int64_t total_ = 0;
  std::vector<int64_t> bounds_;  // begin(r) for r in [0, world]
  std::vector<ShardPiece> tensors_;  // whole tensors: tensor_offset 0
};

// (name, numel) of named tensors (any type with numel()), the input of ShardMap's constructor.
template <class NamedTensors>
std::vector<std::pair<std::string, int64_t>> named_numels(const NamedTensors& tensors) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.numel());
  return out;
}

}  // namespace ringtune
