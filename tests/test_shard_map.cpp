// ShardMap: rank ranges, pieces covering each range exactly, tensors straddling ranks, uneven
// totals, more ranks than elements, and a case checked by hand.
#include <gtest/gtest.h>

#include <map>

#include "distributed/shard_map.h"

namespace ringtune {
namespace {

using TensorList = std::vector<std::pair<std::string, int64_t>>;

// Every invariant of the map, checked against a brute-force owner of each flat element.
void check_invariants(const TensorList& tensors, int world) {
  SCOPED_TRACE("world " + std::to_string(world) + ", " + std::to_string(tensors.size()) +
               " tensors");
  const ShardMap map(tensors, world);
  int64_t total = 0;
  for (const auto& t : tensors) total += t.second;
  ASSERT_EQ(map.total(), total);
  ASSERT_EQ(map.world(), world);

  // Ranges: contiguous, cover [0, total), sizes differ by at most one, larger ones first.
  const std::vector<int64_t> counts = map.counts();
  ASSERT_EQ(static_cast<int>(counts.size()), world);
  int64_t expect_begin = 0;
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(map.begin(r), expect_begin) << "rank " << r;
    EXPECT_EQ(map.count(r), total / world + (r < total % world ? 1 : 0)) << "rank " << r;
    EXPECT_EQ(counts[r], map.count(r));
    expect_begin = map.end(r);
  }
  EXPECT_EQ(expect_begin, total);

  // Name and in-tensor index of every flat element, by walking the list.
  std::vector<std::pair<std::string, int64_t>> owner;
  for (const auto& [name, n] : tensors)
    for (int64_t i = 0; i < n; ++i) owner.emplace_back(name, i);

  // Whole tensors: back to back in order.
  ASSERT_EQ(map.tensors().size(), tensors.size());
  int64_t off = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(map.tensors()[i].name, tensors[i].first);
    EXPECT_EQ(map.tensors()[i].flat_offset, off);
    EXPECT_EQ(map.tensors()[i].tensor_offset, 0);
    EXPECT_EQ(map.tensors()[i].numel, tensors[i].second);
    off += tensors[i].second;
  }

  // Pieces: non-empty, in flat order, exactly covering [begin, end), each element named correctly.
  std::map<std::string, int64_t> covered;  // elements per tensor over all ranks
  for (int r = 0; r < world; ++r) {
    int64_t pos = map.begin(r);
    for (const ShardPiece& p : map.pieces(r)) {
      EXPECT_GT(p.numel, 0) << "rank " << r << " " << p.name;
      EXPECT_EQ(p.flat_offset, pos) << "rank " << r << " " << p.name;
      for (int64_t k = 0; k < p.numel; ++k) {
        ASSERT_LT(p.flat_offset + k, total);
        EXPECT_EQ(owner[p.flat_offset + k].first, p.name);
        EXPECT_EQ(owner[p.flat_offset + k].second, p.tensor_offset + k);
      }
      covered[p.name] += p.numel;
      pos += p.numel;
    }
    EXPECT_EQ(pos, map.end(r)) << "rank " << r;
  }
  for (const auto& [name, n] : tensors) EXPECT_EQ(covered[name], n) << name;
}

TEST(ShardMap, InvariantsForWorldOneToFourOnSeveralLists) {
  const std::vector<TensorList> lists = {
      {{"a", 10}},
      {{"a", 7}, {"b", 1}, {"c", 13}, {"d", 5}},
      {{"empty0", 0}, {"x", 3}, {"empty1", 0}, {"y", 4}, {"empty2", 0}},
      {{"w", 1}, {"v", 1}, {"u", 1}},
      {{"big", 100003}, {"small", 2}},
      {},
  };
  for (const TensorList& l : lists)
    for (int world = 1; world <= 4; ++world) check_invariants(l, world);
  check_invariants({{"a", 7}, {"b", 1}, {"c", 13}}, 7);
}

TEST(ShardMap, MoreRanksThanElementsLeavesEmptyRanks) {
  const ShardMap map({{"a", 2}, {"b", 1}}, 5);
  EXPECT_EQ(map.counts(), (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_TRUE(map.pieces(3).empty());
  EXPECT_TRUE(map.pieces(4).empty());
  EXPECT_EQ(map.begin(4), 3);
  EXPECT_EQ(map.end(4), 3);
  check_invariants({{"a", 2}, {"b", 1}}, 5);
}

// Worked by hand: total 26 over 4 ranks -> counts 7 7 6 6, ranges [0,7) [7,14) [14,20) [20,26).
// Flat layout: q [0,10), k [10,11), v [11,23), o [23,26).
TEST(ShardMap, HandCheckedOffsets) {
  const ShardMap map({{"q", 10}, {"k", 1}, {"v", 12}, {"o", 3}}, 4);
  EXPECT_EQ(map.counts(), (std::vector<int64_t>{7, 7, 6, 6}));
  struct Want {
    int rank;
    std::string name;
    int64_t tensor_offset, flat_offset, numel;
  };
  const std::vector<Want> want = {
      {0, "q", 0, 0, 7},                                           // rank 0: q[0:7]
      {1, "q", 7, 7, 3},  {1, "k", 0, 10, 1}, {1, "v", 0, 11, 3},  // rank 1: q[7:10] k v[0:3]
      {2, "v", 3, 14, 6},                                          // rank 2: v[3:9]
      {3, "v", 9, 20, 3}, {3, "o", 0, 23, 3},                      // rank 3: v[9:12] o
  };
  std::vector<Want> got;
  for (int r = 0; r < 4; ++r)
    for (const ShardPiece& p : map.pieces(r))
      got.push_back({r, p.name, p.tensor_offset, p.flat_offset, p.numel});
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].rank, want[i].rank) << i;
    EXPECT_EQ(got[i].name, want[i].name) << i;
    EXPECT_EQ(got[i].tensor_offset, want[i].tensor_offset) << i;
    EXPECT_EQ(got[i].flat_offset, want[i].flat_offset) << i;
    EXPECT_EQ(got[i].numel, want[i].numel) << i;
  }
}

TEST(ShardMap, DescribeListsRangesAndPieces) {
  const ShardMap map({{"layers.0.lora_A", 5}, {"layers.0.lora_B", 4}}, 2);
  const std::string d = map.describe();
  EXPECT_NE(d.find("2 tensors, 9 elements, 2 ranks"), std::string::npos) << d;
  EXPECT_NE(d.find("layers.0.lora_B"), std::string::npos) << d;
  // Counts 5 and 4: rank 0 holds exactly lora_A, rank 1 exactly lora_B.
  EXPECT_NE(d.find("1  layers.0.lora_B"), std::string::npos) << d;
  EXPECT_EQ(d.find("1  layers.0.lora_A"), std::string::npos) << d;
}

TEST(ShardMap, RejectsBadInput) {
  EXPECT_THROW(ShardMap({{"a", 1}}, 0), std::invalid_argument);
  EXPECT_THROW(ShardMap({{"a", -1}}, 1), std::invalid_argument);
  EXPECT_THROW(ShardMap({{"a", 1}, {"a", 2}}, 1), std::invalid_argument);
  const ShardMap map({{"a", 4}}, 2);
  EXPECT_THROW(map.pieces(2), std::out_of_range);
  EXPECT_THROW(map.end(-1), std::out_of_range);
}

}  // namespace
}  // namespace ringtune
