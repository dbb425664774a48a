// Streaming line reader for JSONL files: one line at a time in bounded memory, whatever the file
// size; CRLF endings and a UTF-8 byte-order mark on the first line are accepted.
// defines: JsonlLineReader
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

namespace ringtune {

class JsonlLineReader {
 public:
  // Throws InputError when the file cannot be opened.
  JsonlLineReader(const std::string& path, size_t max_line_bytes);

  // Reads the next line into `line` (without "\n" / "\r\n"). Returns false at end of file.
  // A line longer than max_line_bytes is read to its end but not kept: `too_long` is set and
  // `line` is left empty, so memory stays bounded by max_line_bytes.
  bool next(std::string& line, bool& too_long);

  int64_t line_number() const { return line_number_; }  // 1-based number of the last line read
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  size_t max_line_bytes_;
  std::ifstream in_;
  int64_t line_number_ = 0;
};

}  // namespace ringtune
