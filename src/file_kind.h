// What a filesystem entry is, in words for messages: "a directory", "a FIFO", "a character device".
// Inputs that must be regular files (configs, data) name what they got instead of blocking on a
// FIFO or reading /dev/zero for ever.
// defines: file_kind, regular_file_problem, data_file_problem
#pragma once
#include <filesystem>
#include <string>

namespace ringtune {

inline const char* file_kind(std::filesystem::file_type type) {
  using T = std::filesystem::file_type;
  switch (type) {
    case T::regular: return "a regular file";
    case T::directory: return "a directory";
    case T::symlink: return "a symbolic link";
    case T::block: return "a block device";
    case T::character: return "a character device";
    case T::fifo: return "a FIFO";
    case T::socket: return "a socket";
    case T::not_found: return "not found";
    default: return "an unknown kind of file";
  }
}

// Why `path` cannot be read as a regular file ("no such file", "not a regular file (a FIFO)", or
// the system's reason: a symbolic link loop, a name too long), or "" when it can be.
inline std::string regular_file_problem(const std::string& path) {
  std::error_code ec;
  const auto kind = std::filesystem::status(path, ec).type();
  if (kind == std::filesystem::file_type::not_found) return "no such file";
  if (ec) return ec.message();
  if (kind != std::filesystem::file_type::regular) return std::string("not a regular file (") + file_kind(kind) + ")";
  return "";
}

// regular_file_problem worded for a data file: "no such data file", or the problem and what was
// expected; "" when it can be read.
inline std::string data_file_problem(const std::string& path) {
  const std::string problem = regular_file_problem(path);
  if (problem.empty()) return problem;
  return problem == "no such file" ? "no such data file" : problem + "; expected a JSONL or JSON data file";
}

}  // namespace ringtune
