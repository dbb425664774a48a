// Fault injection for the tests; see test_hooks.h.
#include "src/test_hooks.h"

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "src/error.h"

namespace ringtune::test_hooks {

namespace {

struct Hooks {
  int64_t kill_at_step = -1, term_at_step = -1, kill_in_checkpoint = -1, term_in_prepare = -1, term_in_planning = -1;
  int64_t slow_checkpoint_ms = -1, file_limit_at_export = -1;
  std::string fault_kind;  // "kill" | "throw" | "" (none)
  int fault_rank = -1;
  int64_t fault_step = -1;
  std::string sample_log_dir;
};

int64_t step_of(const char* var) {
  const char* v = std::getenv(var);
  return v ? std::atoll(v) : -1;
}

// Read once, at the first call of any hook.
const Hooks& hooks() {
  static const Hooks h = [] {
    Hooks h;
    h.kill_at_step = step_of("RINGTUNE_TEST_KILL_AT_STEP");
    h.term_at_step = step_of("RINGTUNE_TEST_TERM_AT_STEP");
    h.kill_in_checkpoint = step_of("RINGTUNE_TEST_KILL_IN_CHECKPOINT");
    h.term_in_prepare = step_of("RINGTUNE_TEST_TERM_IN_PREPARE");
    h.term_in_planning = step_of("RINGTUNE_TEST_TERM_IN_PLANNING");
    h.slow_checkpoint_ms = step_of("RINGTUNE_TEST_SLOW_CHECKPOINT_MS");
    h.file_limit_at_export = step_of("RINGTUNE_TEST_FILE_LIMIT_AT_EXPORT");
    if (const char* v = std::getenv("RINGTUNE_TEST_FAULT")) {
      char kind[16] = {0};
      int rank = -1;
      long long step = -1;
      if (std::sscanf(v, "%15[a-z]:%d:%lld", kind, &rank, &step) == 3) {
        h.fault_kind = kind;
        h.fault_rank = rank;
        h.fault_step = step;
      }
    }
    if (const char* v = std::getenv("RINGTUNE_TEST_SAMPLE_LOG")) h.sample_log_dir = v;
    return h;
  }();
  return h;
}

}  // namespace

void after_step(int64_t step) {
  if (hooks().kill_at_step == step) ::kill(::getpid(), SIGKILL);
  if (hooks().term_at_step == step) ::kill(::getpid(), SIGTERM);
}

bool before_gradient_reduction(int64_t step, int rank) {
  const Hooks& h = hooks();
  if (h.fault_kind.empty() || h.fault_rank != rank || h.fault_step != step) return false;
  if (h.fault_kind == "nan") return true;
  if (h.fault_kind == "kill") ::kill(::getpid(), SIGKILL);
  if (h.fault_kind == "stop") ::kill(::getpid(), SIGSTOP);  // every thread stops: a vanished peer
  if (h.fault_kind == "stop" || h.fault_kind == "hang")  // hang: its watchdog thread reports, but it
    for (;;) ::pause();                                       // makes no progress
  throw Error("RINGTUNE_TEST_FAULT: rank " + std::to_string(rank) + " fails at step " + std::to_string(step));
}

void sample_prepared(int64_t n) {
  if (hooks().term_in_prepare == n) ::kill(::getpid(), SIGTERM);
}

void epoch_planned(int64_t epoch) {
  if (hooks().term_in_planning == epoch) ::kill(::getpid(), SIGTERM);
}

void checkpoint_tensor_written() {
  if (hooks().slow_checkpoint_ms > 0) ::usleep(static_cast<useconds_t>(hooks().slow_checkpoint_ms) * 1000);
}

void checkpoint_written(int64_t step) {
  if (hooks().kill_in_checkpoint == step) ::kill(::getpid(), SIGKILL);
}

void export_started() {
  const int64_t limit = hooks().file_limit_at_export;
  if (limit < 0) return;
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the limit then fails with EFBIG instead of ending the process
  rlimit r{};
  ::getrlimit(RLIMIT_FSIZE, &r);
  r.rlim_cur = static_cast<rlim_t>(limit);
  ::setrlimit(RLIMIT_FSIZE, &r);
}

SampleLog::SampleLog(int rank) {
  const std::string& dir = hooks().sample_log_dir;
  if (!dir.empty()) out_.open(dir + "/samples.rank" + std::to_string(rank), std::ios::app);
}

void SampleLog::add(int64_t epoch, int64_t step, const std::vector<int64_t>& samples) {
  if (!active()) return;
  for (int64_t idx : samples) out_ << epoch << " " << step << " " << idx << "\n";
}

void SampleLog::flush() {
  if (active()) out_.flush();
}

}  // namespace ringtune::test_hooks
