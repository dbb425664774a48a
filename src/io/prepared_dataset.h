// Tokenized datasets cached in HDF5 (`ringtune prepare`, and implicitly `train`): token ids,
// loss masks, per-sample offsets and source lines, statistics, and fingerprints of the data
// files, the tokenizer and the format/options. A cache whose fingerprints differ from the
// current inputs is rebuilt, and the log says which input changed.
//
// File layout (format_version 1): datasets /ids int32 [tokens], /loss_mask uint8 [tokens],
// /offsets int64 [samples + 1], /source_line int64 [samples]; root attributes kind, format_version,
// data_hash, tokenizer_hash, format_hash, sources, samples, tokens, supervised_tokens,
// length_min/p50/p90/p99/max, report. Written to a temporary name and renamed into place.
// defines: PreparedStats, PreparedDataset, PrepareResult, prepare_dataset
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "src/data/data_pipeline.h"

namespace ringtune {

struct PreparedStats {
  int64_t samples = 0, tokens = 0, supervised_tokens = 0;
  int64_t length_min = 0, length_p50 = 0, length_p90 = 0, length_p99 = 0, length_max = 0;
  std::string describe() const;  // one line
};

struct PreparedDataset {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
  std::vector<int64_t> offsets;  // sample i is [offsets[i], offsets[i+1])
  std::vector<int64_t> source_line;
  PreparedStats stats;
  std::string data_hash, tokenizer_hash, format_hash, sources;

  int64_t size() const { return static_cast<int64_t>(offsets.empty() ? 0 : offsets.size() - 1); }
  // Reads and checks a prepared file (checksums, shapes, offsets). InputError names the file.
  static PreparedDataset load(const std::string& path);
};

struct PrepareResult {
  std::string path;
  bool reused = false;    // the cache matched and was not rebuilt
  bool created = false;   // no file was at the path before: the cache is this call's (to remove on a later refusal)
  std::string reason;     // why it was (re)built: "new", "data changed", ...
  PreparedStats stats;
  DataReport report;      // of the build (empty when reused)
};

// Where `prepare` and `train` keep a split's cache: OUTPUT_DIR/prepared/<split>.h5.
std::string prepared_dataset_path(const std::string& output_dir, const std::string& split);

// Tokenizes `inputs` into `out_path` unless a matching cache is already there (or `force`).
PrepareResult prepare_dataset(const DataPipeline& pipeline, const std::vector<std::string>& inputs,
                              const std::string& out_path, bool force = false);

}  // namespace ringtune
