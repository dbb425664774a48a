// Exit codes and messages of the exceptions that end a command; see exit_status.h.
#include "src/exit_status.h"

#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <filesystem>

#include "src/error.h"
#include "src/stop_signal.h"

namespace ringtune {

ExitStatus exit_status(const std::exception& e) {
  ExitStatus s;
  s.prefix = "error: ";
  if (dynamic_cast<const InputError*>(&e)) {
    s.code = 2;
  } else if (const auto* stop = dynamic_cast<const Interrupted*>(&e)) {
    s.code = stop->exit_code();
  } else if (dynamic_cast<const EnvironmentError*>(&e)) {
    s.code = 1;
  } else if (const auto* fe = dynamic_cast<const std::filesystem::filesystem_error*>(&e)) {
    const int err = fe->code().value();
    const bool input = err == ENAMETOOLONG || err == ELOOP || err == ENOTDIR || err == EISDIR || err == EACCES ||
                       err == EPERM || err == EROFS || err == ENOENT || err == EEXIST;
    s.code = input ? 2 : 1;
    std::string where = fe->path1().string();
    if (!fe->path2().empty()) where += " -> " + fe->path2().string();
    s.message = one_line((where.empty() ? std::string() : where + ": ") + fe->code().message());
    return s;
  } else {
    s.code = 1;
    s.prefix = "internal error: ";
  }
  s.message = one_line(e.what());
  return s;
}

void print_error_line(const std::string& line) {
  std::cout.flush();
  std::cerr.flush();
  const std::string text = line + "\n";
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace ringtune
