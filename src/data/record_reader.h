// The records of a data file, each as JSON text, in bounded memory whatever the file size: JSON
// Lines (one record a line, as JsonlLineReader reads them), or one JSON array of records (what
// torchtune's and Hugging Face's `json` loaders also read), told apart by the file's first byte
// that is not whitespace: '[' starts an array (a file named *.jsonl is always JSON Lines). Messages name a line as "FILE:LINE" and an array
// record as "FILE[INDEX]" (0-based, as Python indexes the loaded list) with the line it starts on.
// defines: RecordReader
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "src/data/jsonl_reader.h"

namespace ringtune {

class RecordReader {
 public:
  // Throws InputError when the file cannot be opened.
  RecordReader(const std::string& path, size_t max_record_bytes);
  ~RecordReader();

  // The next record's text into `record`. Returns false after the last one. A record longer than
  // max_record_bytes is read to its end but not kept (`too_long` set, `record` empty). A JSON
  // array that is not closed, a missing ',' between records, an empty record or text after the
  // closing ']' are InputError "FILE[INDEX] (line L): ...": the rest of the file cannot be read.
  bool next(std::string& record, bool& too_long);

  // The checks every record passes before it is parsed: InvalidSample "line_too_long" when next()
  // set too_long, "invalid_utf8" naming the first bad byte.
  void check(const std::string& record, bool too_long) const;

  bool is_array() const { return !lines_; }
  int64_t line_number() const;  // the 1-based line the last record starts on
  std::string location() const;  // "FILE:LINE" or "FILE[INDEX] (line L)"
  const std::string& path() const { return path_; }

 private:
  int get();          // the next byte, or -1 at the end of the file
  void unget(int c);  // one byte back
  int skip_space();   // the next byte that is not JSON whitespace, or -1
  bool finish();      // after the closing ']': only whitespace may follow; returns false
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  size_t max_bytes_;
  std::unique_ptr<JsonlLineReader> lines_;  // JSON Lines; null for an array
  std::ifstream in_;
  std::string buf_;
  size_t pos_ = 0;
  int pending_ = -2;  // a byte given back, or -2
  int64_t line_ = 1;  // the line of the next byte
  int64_t index_ = -1;
  int64_t record_line_ = 0;
  bool done_ = false;
};

}  // namespace ringtune
