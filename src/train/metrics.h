// What a training run reports per optimizer step: one JSON line in OUTPUT_DIR/metrics.jsonl
// (rank 0) and a progress line on the console (a live line on a terminal, else a log line every
// 5% of the run and for the first steps).
// defines: StepMetrics, MetricsLog
#pragma once
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

namespace ringtune {

struct StepMetrics {
  int64_t step = 0;  // 1-based: optimizer steps done
  int64_t epoch = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  int64_t supervised_tokens = 0;
  int64_t seq_len = 0;  // columns of the widest micro-batch on rank 0 (context_length unless padding: longest)
  double elapsed_s = 0;
  std::optional<double> valid_loss;  // when validation ran after this step
  // Where the wall time since the previous line went, in ms on rank 0's clock: assembling the
  // micro-batches, forward (with the loss), backward, gradient communication (reduce, norm,
  // statistics, ZeRO-1 gather), the optimizer update, this step's validation, and the checkpoint
  // written after the previous step; `step` is the whole interval (the rest is bookkeeping).
  // Host clocks: on a GPU, a part that waits for the device absorbs the device time before it.
  struct Times {
    double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0, eval = 0, checkpoint = 0, step = 0;
  } ms;
  double mfu = -1;          // model FLOPs utilisation (src/train/flops.h); < 0: no peak known
  int64_t rss_mib = -1;     // rank 0's resident memory after the step
  int64_t peak_rss_mib = -1;  // and its peak so far
};

class MetricsLog {
 public:
  // `path`: metrics.jsonl; only `writer` (rank 0) writes it. A resumed run (start_step > 0) keeps
  // the lines of steps <= start_step and appends; a fresh run truncates.
  MetricsLog(const std::string& path, bool writer, int64_t start_step, int64_t total_steps);

  // Appends the step's line (flushed) and reports progress.
  void record(const StepMetrics& m);
  const std::string& path() const { return path_; }

 private:
  void progress(const StepMetrics& m);

  std::string path_;
  bool writer_;
  int64_t start_step_, total_steps_;
  bool tty_ = false;
  std::ofstream out_;
};

}  // namespace ringtune
