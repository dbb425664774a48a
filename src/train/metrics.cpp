// Per-step metrics and progress; see metrics.h.
#include "src/train/metrics.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "src/error.h"
#include "src/io/atomic_file.h"

namespace ringtune {

namespace {

// Keeps the lines of steps <= `step` (a resumed run rewrites what follows); a torn last line
// (a crash mid-write) ends the kept part.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (...) {
      break;
    }
  }
  in.close();
  atomic_write(path, kept);
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool writer, int64_t start_step, int64_t total_steps)
    : path_(path), writer_(writer), start_step_(start_step), total_steps_(total_steps) {
  if (!writer_) return;
  if (start_step_ > 0) truncate_metrics(path_, start_step_);
  out_.open(path_, start_step_ > 0 ? std::ios::app : std::ios::trunc);
  if (!out_) throw InputError(path_ + ": cannot open for writing");
  tty_ = isatty(STDERR_FILENO);
}

void MetricsLog::record(const StepMetrics& m) {
  if (writer_) {
    nlohmann::json j = {{"step", m.step},           {"epoch", m.epoch},
                        {"loss", m.loss},           {"lr", m.lr},
                        {"grad_norm", m.grad_norm}, {"tokens_per_s", m.tokens_per_s},
                        {"supervised_tokens", m.supervised_tokens}, {"seq_len", m.seq_len},
                        {"elapsed_s", m.elapsed_s}};
    j["ms"] = {{"data", m.ms.data},       {"forward", m.ms.forward},     {"backward", m.ms.backward},
               {"comm", m.ms.comm},       {"optimizer", m.ms.optimizer}, {"eval", m.ms.eval},
               {"checkpoint", m.ms.checkpoint}, {"step", m.ms.step}};
    for (auto& v : j["ms"]) v = std::round(v.get<double>() * 1000) / 1000;  // µs resolution
    if (m.mfu >= 0) j["mfu"] = m.mfu;
    if (m.rss_mib >= 0) j["rss_mib"] = m.rss_mib;
    if (m.peak_rss_mib >= 0) j["peak_rss_mib"] = m.peak_rss_mib;
    if (m.valid_loss) {
      j["valid_loss"] = *m.valid_loss;
      j["valid_perplexity"] = std::exp(*m.valid_loss);
    }
    out_ << j.dump() << "\n";
    out_.flush();
    // A line that cannot be written (the disk filled) ends the run rather than leave a gap in the
    // record: the last checkpoint stays, and a resumed run drops a partial last line.
    if (!out_)
      throw EnvironmentError(path_ + ": cannot write step " + std::to_string(m.step) + ": " +
                             write_failure(path_, errno, "write failed"));
  }
  progress(m);
}

void MetricsLog::progress(const StepMetrics& m) {
  const bool last = m.step == total_steps_;
  const double eta = m.elapsed_s / static_cast<double>(m.step - start_step_) * static_cast<double>(total_steps_ - m.step);
  if (tty_) {
    std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %.0fs   ", static_cast<long long>(m.step),
                 static_cast<long long>(total_steps_), m.loss, m.lr, m.tokens_per_s, eta);
    if (last) std::fprintf(stderr, "\n");
  } else if (last || m.step % std::max<int64_t>(1, total_steps_ / 20) == 0 || m.step <= 3) {
    spdlog::info("step {}/{} loss {:.4f} lr {:.3e} grad_norm {:.3f} {:.0f} tok/s ETA {:.0f}s", m.step, total_steps_,
                 m.loss, m.lr, m.grad_norm, m.tokens_per_s, eta);
  }
}

}  // namespace ringtune
