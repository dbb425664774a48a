// Training checkpoints in HDF5: one file per checkpoint under OUTPUT_DIR/checkpoints/, written
// atomically (temporary name, flush, fsync, rename) and then named by the `latest` pointer file
// (itself replaced atomically). Everything is stored per logical tensor, never per rank:
//   /trainable/<name>            float32 master values of every trainable tensor (the optimizer's
//                                copy; the model's parameters may hold them rounded to bfloat16)
//   /optimizer/<name>.exp_avg    AdamW first moment    /optimizer/<name>.exp_avg_sq  second moment
//                                (8-bit AdamW: <name>.exp_avg.q8 uint8 codes, flat, and
//                                <name>.exp_avg.absmax float32 block scales; same for exp_avg_sq)
//   /rng/torch_cpu               the torch CPU generator state (dropout)
// and root attributes: kind, format_version, step (optimizer steps done), epoch, total_steps,
// adam_step, config (resolved YAML), base_hash, tokenizer_hash, data_hash, valid_loss (NaN when
// validation did not run at that step; absent in older files), global_batch (absent in older
// files). Every dataset carries a Fletcher-32 checksum; loading reads them all, so a corrupted file is detected.
// defines: CheckpointState, save_checkpoint, load_checkpoint, find_resume_checkpoint, prune_checkpoints,
//          remove_checkpoints_after, list_checkpoints, checkpoint_path
#pragma once
#include <cmath>
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
  double valid_loss = std::nan("");  // validation loss at this step, when validation ran at it
  int64_t global_batch = -1;         // sequences per optimizer step of the run (absent in older files: -1)
};

// OUTPUT_DIR/checkpoints/step-<step, 8 digits>.h5
std::string checkpoint_path(const std::string& output_dir, int64_t step);

// Writes OUTPUT_DIR/checkpoints/step-<step>.h5 and points `latest` at it. Returns the path.
std::string save_checkpoint(const std::string& output_dir, const CheckpointState& state);

// Reads a checkpoint (all checksums verified). InputError names the file on any problem.
CheckpointState load_checkpoint(const std::string& path);

// For `resume: auto`: the newest checkpoint in OUTPUT_DIR/checkpoints that loads, trying `latest`
// first and then older ones by step, with a warning naming each file that fails. Empty if there
// are none; InputError listing them if there are some and none loads.
std::string find_resume_checkpoint(const std::string& output_dir, CheckpointState& state);

// Keeps `keep` checkpoints (keep <= 0: all), as llmforge's num_checkpoints_to_keep: when some
// checkpoint records a validation loss, the `keep` with the lowest one (a checkpoint without one
// ranks last), else the newest `keep`; the newest checkpoint is always kept as well, so `resume:
// auto` continues where the run stopped. A file whose attributes cannot be read is left alone.
void prune_checkpoints(const std::string& output_dir, int64_t keep);

// Removes the checkpoints in OUTPUT_DIR/checkpoints past step `after`, except `kept` (the one
// just written): a run that started over (resume: none) or from an earlier step abandons the
// earlier run's later checkpoints, which would otherwise outrank its own as "newest" (pruning
// removed the run's new checkpoint and kept the old one). Returns the removed file names.
std::vector<std::string> remove_checkpoints_after(const std::string& output_dir, int64_t after,
                                                  const std::string& kept);

// The checkpoint files in OUTPUT_DIR/checkpoints, newest (highest step) first.
std::vector<std::string> list_checkpoints(const std::string& output_dir);

}  // namespace ringtune
