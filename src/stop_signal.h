// Stop signals: SIGTERM (what Slurm sends before a time limit, and `scancel`) and SIGINT only set
// a flag that long-running work polls: training stops after the current step with a checkpoint,
// data preparation removes what it started and throws Interrupted.
// defines: Interrupted, install_stop_handlers, stop_signalled, throw_if_stop_signalled
#pragma once
#include <string>

#include "src/error.h"

namespace ringtune {

// A stop signal ended work that cannot be resumed part-way (data preparation), after that work
// removed what it had started. main() prints "error: <what>" and exits with 128 + the signal (143
// for SIGTERM), as a shell reports a process ended by that signal.
class Interrupted : public Error {
 public:
  Interrupted(const std::string& what, int signal) : Error(what), signal_(signal) {}
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
};

// Installs the handlers and clears the flag. Commands that poll call it; the others keep the
// default actions (a stop signal ends them at once).
void install_stop_handlers();

// The signal received since install_stop_handlers (SIGTERM or SIGINT), or 0.
int stop_signalled();

// Throws Interrupted("interrupted by SIGTERM while <doing>; <consequence>") when a stop signal
// has arrived.
void throw_if_stop_signalled(const std::string& doing, const std::string& consequence);

}  // namespace ringtune
