// ShardMap: contiguous per-rank ranges of a flat buffer of named tensors.
#include "distributed/shard_map.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <stdexcept>

namespace ringtune {

ShardMap::ShardMap(const std::vector<std::pair<std::string, int64_t>>& tensors, int world, int64_t align)
    : world_(world) {
  if (world < 1)
    throw std::invalid_argument("ShardMap: world size " + std::to_string(world) + " < 1");
  if (align < 1) throw std::invalid_argument("ShardMap: align " + std::to_string(align) + " < 1");
  std::set<std::string> seen;
  tensors_.reserve(tensors.size());
  for (const auto& [name, numel] : tensors) {
    if (numel < 0)
      throw std::invalid_argument("ShardMap: tensor '" + name + "' has negative numel " +
                                  std::to_string(numel));
    if (!seen.insert(name).second)
      throw std::invalid_argument("ShardMap: tensor '" + name + "' listed twice");
    tensors_.push_back(ShardPiece{name, 0, total_, numel});
    total_ += numel;
  }
  const int64_t base = total_ / world_, extra = total_ % world_;
  bounds_.resize(static_cast<size_t>(world_) + 1);
  for (int r = 0; r <= world_; ++r) {
    int64_t b = r * base + std::min<int64_t>(r, extra);
    if (align > 1 && r > 0 && r < world_) {
      // the tensor holding element b (the first one ending after b)
      auto it = std::upper_bound(tensors_.begin(), tensors_.end(), b,
                                 [](int64_t x, const ShardPiece& t) { return x < t.flat_offset + t.numel; });
      if (it != tensors_.end()) {
        const int64_t offset = b - it->flat_offset;
        const int64_t rounded = std::min(it->numel, (offset + align / 2) / align * align);
        b = it->flat_offset + rounded;
      }
    }
    bounds_[static_cast<size_t>(r)] = std::max(b, r > 0 ? bounds_[static_cast<size_t>(r) - 1] : int64_t{0});
  }
}

int64_t ShardMap::begin(int rank) const {
  if (rank < 0 || rank > world_)  // begin(world) == total: the end of the last rank
    throw std::out_of_range("ShardMap: rank " + std::to_string(rank) + " outside [0, " +
                            std::to_string(world_) + ")");
  return bounds_[static_cast<size_t>(rank)];
}

int64_t ShardMap::end(int rank) const {
  if (rank < 0 || rank >= world_)
    throw std::out_of_range("ShardMap: rank " + std::to_string(rank) + " outside [0, " +
                            std::to_string(world_) + ")");
  return begin(rank + 1);
}

std::vector<int64_t> ShardMap::counts() const {
  std::vector<int64_t> c(world_);
  for (int r = 0; r < world_; ++r) c[r] = count(r);
  return c;
}

std::vector<ShardPiece> ShardMap::pieces(int rank) const {
  const int64_t b = begin(rank), e = end(rank);
  std::vector<ShardPiece> out;
  if (b == e) return out;
  // First tensor whose range ends after b (tensors_ is sorted by flat_offset).
  auto it =
      std::upper_bound(tensors_.begin(), tensors_.end(), b,
                       [](int64_t x, const ShardPiece& t) { return x < t.flat_offset + t.numel; });
  for (; it != tensors_.end() && it->flat_offset < e; ++it) {
    const int64_t lo = std::max(b, it->flat_offset), hi = std::min(e, it->flat_offset + it->numel);
    if (lo < hi) out.push_back(ShardPiece{it->name, lo - it->flat_offset, lo, hi - lo});
  }
  return out;
}

std::string ShardMap::describe() const {
  std::string s = "shard map: " + std::to_string(tensors_.size()) + " tensors, " +
                  std::to_string(total_) + " elements, " + std::to_string(world_) + " ranks\n";
  int width = 12;  // "(rank range)"
  for (const ShardPiece& t : tensors_) width = std::max(width, static_cast<int>(t.name.size()));
  std::vector<char> buf(static_cast<size_t>(width) + 128);  // fits every line
  char* line = buf.data();
  std::snprintf(line, buf.size(), "%5s  %-*s %14s %14s %12s\n", "rank", width, "name",
                "tensor_offset", "flat_offset", "numel");
  s += line;
  for (int r = 0; r < world_; ++r) {
    std::snprintf(line, buf.size(), "%5d  %-*s %14s %14lld %12lld\n", r, width, "(rank range)", "",
                  static_cast<long long>(begin(r)), static_cast<long long>(count(r)));
    s += line;
    for (const ShardPiece& p : pieces(r)) {
      std::snprintf(line, buf.size(), "%5d  ", r);
      s += line + p.name + std::string(width - p.name.size(), ' ');
      std::snprintf(line, buf.size(), " %14lld %14lld %12lld\n",
                    static_cast<long long>(p.tensor_offset), static_cast<long long>(p.flat_offset),
                    static_cast<long long>(p.numel));
      s += line;
    }
  }
  return s;
}

}  // namespace ringtune
