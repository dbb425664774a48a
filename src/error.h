// ringtune::Error and its subclasses: the only exceptions library code throws.
// main() maps them to exit codes: InputError -> 2 (bad config, data or weights), anything else -> 1
// (EnvironmentError reported as "error:", the rest as "internal error:").
#pragma once
#include <stdexcept>
#include <string>

namespace ringtune {

// Internal failure: a bug or an environment problem. Exit code 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The environment failed an operation (disk full, read-only filesystem, a peer gone): one line
// naming the path and the cause. Exit code 1, reported as "error:", not as an internal error.
class EnvironmentError : public Error {
 public:
  explicit EnvironmentError(const std::string& what) : Error(what) {}
};

// Bad user input. The message is one line naming the file (and key or line) and the reason.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
};

// A message as the one line it is printed on: a newline or carriage return quoted from the input
// (a YAML block scalar, a value with a line break) is written as \n or \r.
inline std::string one_line(const std::string& message) {
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  while (out.size() >= 2 && out.compare(out.size() - 2, 2, "\\n") == 0) out.resize(out.size() - 2);
  return out;
}

}  // namespace ringtune
