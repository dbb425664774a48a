// Fault injection for the tests, in one place. Production code calls these hooks at fixed points;
// each reads its environment variable once (at the first call of any hook) and is a no-op when
// the variable is unset, so a normal run pays one branch per call.
//
//   RINGTUNE_TEST_KILL_AT_STEP=<n>        SIGKILL to itself after optimizer step n (after that
//                                         step's checkpoint, if any): a crash between checkpoints
//   RINGTUNE_TEST_TERM_AT_STEP=<n>        SIGTERM to itself after step n: a Slurm stop
//   RINGTUNE_TEST_KILL_IN_CHECKPOINT=<n>  SIGKILL once step n's checkpoint is complete under its
//                                         temporary name, before the rename makes it visible
//   RINGTUNE_TEST_SLOW_CHECKPOINT_MS=<ms> every tensor written to a checkpoint takes <ms> more
//                                         milliseconds: a slow filesystem (the watchdog must not
//                                         trip on it)
//   RINGTUNE_TEST_TERM_IN_PREPARE=<n>    SIGTERM to itself once n samples are prepared: a stop
//                                         during data preparation
//   RINGTUNE_TEST_TERM_IN_PLANNING=<n>   SIGTERM to itself once epoch n (0-based) is packed while the
//                                         run's steps are counted: a stop before the first step
//   RINGTUNE_TEST_FILE_LIMIT_AT_EXPORT=<bytes>
//                                         when training writes its result (adapter/ or model/), no
//                                         file may grow past <bytes> (RLIMIT_FSIZE, SIGXFSZ
//                                         ignored): a disk or quota that runs out at the end
//   RINGTUNE_TEST_FAULT=<kill|throw|nan|stop|hang>:<rank>:<step>
//                                         rank <rank> dies (SIGKILL), throws an Error, has a NaN
//                                         loss, stops (SIGSTOP: a peer cut off) or hangs (its
//                                         threads run but it makes no progress) between the
//                                         backward passes and the gradient reduction of step
//                                         <step> (1-based): a failing or stalled peer, or numbers
//                                         that stopped being numbers
//   RINGTUNE_TEST_SAMPLE_LOG=<dir>        every rank appends "epoch step sample" lines for the
//                                         samples it trains on to <dir>/samples.rank<r>
//
// defines: after_step, before_gradient_reduction, checkpoint_written, checkpoint_tensor_written,
//          sample_prepared, epoch_planned, export_started, SampleLog
#pragma once
#include <cstdint>
#include <fstream>
#include <vector>

namespace ringtune::test_hooks {

// After the n-th sample (1-based) of a data preparation: TERM_IN_PREPARE.
void sample_prepared(int64_t n);

// Epoch `epoch` (0-based) is packed while the run's steps are counted: TERM_IN_PLANNING.
void epoch_planned(int64_t epoch);

// After optimizer step `step` (1-based) and its checkpoint: KILL_AT_STEP, then TERM_AT_STEP.
void after_step(int64_t step);

// Between the backward passes and the gradient reduction of step `step` (1-based): FAULT. True
// when the rank's loss is to be NaN.
bool before_gradient_reduction(int64_t step, int rank);

// The checkpoint of step `step` is written under its temporary name: KILL_IN_CHECKPOINT.
void checkpoint_written(int64_t step);

// A tensor of a checkpoint is written: SLOW_CHECKPOINT_MS.
void checkpoint_tensor_written();

// Training starts writing its result: FILE_LIMIT_AT_EXPORT.
void export_started();

// SAMPLE_LOG: which samples this rank trained on. Inactive (every call a no-op) when unset.
class SampleLog {
 public:
  SampleLog() = default;  // inactive
  explicit SampleLog(int rank);
  bool active() const { return out_.is_open(); }
  void add(int64_t epoch, int64_t step, const std::vector<int64_t>& samples);
  void flush();

 private:
  std::ofstream out_;
};

}  // namespace ringtune::test_hooks
