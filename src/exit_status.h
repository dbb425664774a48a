// What an exception that ends a command means for the user: the exit code and the one line printed
// for it, decided in one place for main() and for a rank that takes the others down (cmd_train).
//   InputError                    2, "error: ..."  (bad config, data, weights, flags)
//   Interrupted                   128 + signal, "error: ..."
//   EnvironmentError              1, "error: ..."  (no space, a dead peer, an I/O error)
//   std::filesystem::filesystem_error, where no check named the path first: 2 for the errnos of a
//                                 path the user gave that cannot be used (too long, a link loop,
//                                 not a directory, no permission, missing), else 1; "error: PATH:
//                                 reason"
//   anything else                 1, "internal error: ..."
// defines: ExitStatus, exit_status, print_error_line
#pragma once
#include <exception>
#include <string>

namespace ringtune {

struct ExitStatus {
  int code = 1;
  std::string prefix;   // "error: " or "internal error: "
  std::string message;  // one line (one_line applied)
};

ExitStatus exit_status(const std::exception& e);

// `line` and a newline on stderr in one write, so that ranks writing at once (mpirun forwards
// each write as it comes) do not interleave their lines.
void print_error_line(const std::string& line);

}  // namespace ringtune
