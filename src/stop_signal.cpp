// Stop signals; see stop_signal.h.
#include "src/stop_signal.h"

#include <atomic>
#include <csignal>

namespace ringtune {

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

}  // namespace

void install_stop_handlers() {
  g_signal = 0;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

int stop_signalled() { return g_signal.load(); }

void throw_if_stop_signalled(const std::string& doing, const std::string& consequence) {
  const int sig = g_signal.load();
  if (sig == 0) return;
  throw Interrupted(std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + " while " + doing + "; " +
                        consequence,
                    sig);
}

}  // namespace ringtune
