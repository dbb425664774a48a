// From a prepared dataset to training sequences: one global sample order that depends only on
// (seed, epoch), then packing into sequences of context_length (several samples per sequence,
// positions restarting per sample, segment ids so attention never crosses samples), or one
// sample per sequence when packing is off. Labels are next-token targets where the loss mask
// says so, -100 elsewhere. A SequenceBatch turns some of them into the tensors of one forward pass.
// defines: kIgnoreLabel, sample_order, PackedSequence, pack_sequences, pack_in_file_order, SequenceBatch
#pragma once
#include <cstdint>
#include <vector>

#include "src/io/prepared_dataset.h"

namespace at {
class Tensor;
}

namespace ringtune {

constexpr int64_t kIgnoreLabel = -100;

// A permutation of [0, n) from (seed, epoch); identical on every rank and every world size.
std::vector<int64_t> sample_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);

struct PackedSequence {
  std::vector<int64_t> samples;  // dataset indices, in order
  std::vector<int32_t> tokens;   // context_length (padded with pad_id)
  std::vector<int32_t> positions;
  std::vector<int32_t> segments;  // sample slot within the sequence; padding gets -1
  std::vector<int32_t> labels;    // next-token target or kIgnoreLabel
  int64_t supervised = 0;         // labels != kIgnoreLabel
  int64_t used = 0;               // tokens before the padding
};

// Packs the samples of `order` greedily, in order: a sample that does not fit in the space left
// starts a new sequence. With packing off, each sample gets its own sequence. Samples longer than
// context_length are an Error (prepare truncates or drops them).
std::vector<PackedSequence> pack_sequences(const PreparedDataset& data,
                                           const std::vector<int64_t>& order,
                                           int64_t context_length, bool packing, int32_t pad_id);

// The samples in file order, packed: the sequences of validation and evaluation.
std::vector<PackedSequence> pack_in_file_order(const PreparedDataset& data, int64_t context_length, bool packing,
                                               int32_t pad_id);

struct SequenceBatch {
  // int64 tensors [B, L]: tokens, positions, segment ids, labels. L is context_length, or with
  // pad_to_longest the longest row's used tokens (the padding cut off carries no loss and no
  // attention, so the loss is the same up to rounding).
  std::vector<at::Tensor> tensors() const;
  int64_t length() const;
  std::vector<const PackedSequence*> rows;
  bool pad_to_longest = false;
};

}  // namespace ringtune
