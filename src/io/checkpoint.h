// Training checkpoints in HDF5: one file per checkpoint under OUTPUT_DIR/checkpoints/, written
// atomically (temporary name, flush, fsync, rename) and then named by the `latest` pointer file
// (itself replaced atomically). Everything is stored per logical tensor, never per rank:
//   /trainable/<name>            float32 master values of every trainable tensor (the optimizer's
//                                copy; the model's parameters may hold them rounded to bfloat16)
//   /optimizer/<name>.exp_avg    AdamW first moment    /optimizer/<name>.exp_avg_sq  second moment
//   /rng/torch_cpu               the torch CPU generator state (dropout)
// and root attributes: kind, format_version, step (optimizer steps done), epoch, total_steps,
// adam_step, config (resolved YAML), base_hash, tokenizer_hash, data_hash. Every dataset carries a
// Fletcher-32 checksum; loading reads them all, so a corrupted file is detected.
// defines: CheckpointState, save_checkpoint, load_checkpoint, find_resume_checkpoint, prune_checkpoints
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

struct CheckpointState {
  int64_t step = 0, epoch = 0, total_steps = 0, adam_step = 0;
  std::string config_yaml, base_hash, tokenizer_hash, data_hash;
  std::vector<std::pair<std::string, at::Tensor>> trainable;  // name -> values
  std::vector<std::pair<std::string, at::Tensor>> optimizer;  // "<name>.exp_avg" / ".exp_avg_sq"
  std::vector<uint8_t> rng;         // torch CPU generator state bytes
};

// Writes OUTPUT_DIR/checkpoints/step-<step>.h5 and points `latest` at it. Returns the path.
std::string save_checkpoint(const std::string& output_dir, const CheckpointState& state);

// Reads a checkpoint (all checksums verified). InputError names the file on any problem.
CheckpointState load_checkpoint(const std::string& path);

// For `resume: auto`: the newest checkpoint in OUTPUT_DIR/checkpoints that loads, trying `latest`
// first and then older ones by step, with a warning naming each file that fails. Empty if none.
std::string find_resume_checkpoint(const std::string& output_dir, CheckpointState& state);

// Deletes all but the newest `keep` checkpoints (keep <= 0: keep all).
void prune_checkpoints(const std::string& output_dir, int64_t keep);

// The checkpoint files in OUTPUT_DIR/checkpoints, newest (highest step) first.
std::vector<std::string> list_checkpoints(const std::string& output_dir);

}  // namespace ringtune
