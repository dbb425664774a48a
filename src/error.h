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

}  // namespace ringtune
