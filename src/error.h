// ringtune::Error and its subclasses: the only exceptions library code throws.
// main() maps them to exit codes: InputError -> 2 (bad config, data or weights), anything else -> 1.
#pragma once
#include <stdexcept>
#include <string>

namespace ringtune {

// Internal failure: a bug or an environment problem. Exit code 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Bad user input. The message is one line naming the file (and key or line) and the reason.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
};

}  // namespace ringtune
