// Records of JSON Lines files and of JSON arrays; see record_reader.h. An array is scanned byte by
// byte, following strings (with escapes) and the nesting of {} and [], so that each top-level
// element's text can be handed to the same sample parser as a JSONL line.
#include "src/data/record_reader.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/data/conversation.h"
#include "src/data/utf8.h"
#include "src/error.h"

namespace ringtune {

namespace {

bool json_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

RecordReader::RecordReader(const std::string& path, size_t max_record_bytes) : path_(path), max_bytes_(max_record_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError(path + ": is a directory; expected a JSONL or JSON data file");
  const bool jsonl_name = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  if (!jsonl_name) {
    in_.open(path, std::ios::binary);
    if (!in_) throw InputError(path + ": cannot open the file (" + std::strerror(errno) + ")");
    int c = get();
    if (c == 0xEF) {  // a UTF-8 byte-order mark
      const int b = get(), d = get();
      c = b == 0xBB && d == 0xBF ? get() : -1;
    }
    while (c >= 0 && json_space(c)) c = get();
    if (c == '[') return;  // an array: its records follow
    in_.close();
  }
  lines_ = std::make_unique<JsonlLineReader>(path, max_record_bytes);
}

RecordReader::~RecordReader() = default;

int RecordReader::get() {
  int c;
  if (pending_ != -2) {
    c = pending_;
    pending_ = -2;
  } else {
    if (pos_ == buf_.size()) {
      buf_.resize(1 << 16);
      in_.read(&buf_[0], static_cast<std::streamsize>(buf_.size()));
      if (in_.bad()) fail("read error");
      buf_.resize(static_cast<size_t>(in_.gcount()));
      pos_ = 0;
      if (buf_.empty()) return -1;
    }
    c = static_cast<unsigned char>(buf_[pos_++]);
  }
  if (c == '\n') ++line_;
  return c;
}

void RecordReader::unget(int c) {
  if (c == '\n') --line_;
  pending_ = c;
}

int RecordReader::skip_space() {
  int c = get();
  while (c >= 0 && json_space(c)) c = get();
  return c;
}

void RecordReader::fail(const std::string& what) const {
  throw InputError(path_ + "[" + std::to_string(index_ < 0 ? 0 : index_) + "] (line " + std::to_string(line_) +
                   "): " + what);
}

bool RecordReader::next(std::string& record, bool& too_long) {
  if (lines_) return lines_->next(record, too_long);
  record.clear();
  too_long = false;
  if (done_) return false;
  int c = skip_space();
  if (index_ >= 0) {  // after a record: ',' or the closing ']'
    if (c == ']') return finish();
    if (c != ',') {
      ++index_;
      fail(c < 0 ? "the file ends inside the JSON array (no closing ']')"
                 : "expected ',' or ']' after the previous record, got '" + std::string(1, static_cast<char>(c)) + "'");
    }
    c = skip_space();
  } else if (c == ']') {
    return finish();  // an empty array
  }
  ++index_;
  if (c < 0) fail("the file ends inside the JSON array (no closing ']')");
  if (c == ',' || c == ']') fail("expected a record, got '" + std::string(1, static_cast<char>(c)) + "'");
  record_line_ = line_;
  int depth = 0;
  bool in_string = false, escaped = false, closed = false;  // closed: its top-level {} or [] ended
  size_t size = 0;
  while (true) {
    if (c < 0)
      fail(closed ? "the file ends inside the JSON array (no closing ']')"
                  : "the file ends inside this record (the JSON array is not closed)");
    if (closed && !json_space(c) && c != ',' && c != ']')
      fail("expected ',' or ']' after this record, got '" + std::string(1, static_cast<char>(c)) + "'");
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) {  // the array's own ']' after a scalar record
        unget(c);
        break;
      }
      closed = --depth == 0;
    } else if (c == ',' && depth == 0) {
      unget(c);
      break;
    }
    if (++size > max_bytes_) {
      if (!too_long) {
        too_long = true;
        record.clear();
        record.shrink_to_fit();
      }
    } else {
      record.push_back(static_cast<char>(c));
    }
    c = get();
  }
  return true;
}

bool RecordReader::finish() {
  done_ = true;
  if (skip_space() >= 0)
    throw InputError(path_ + " (line " + std::to_string(line_) + "): text after the JSON array's closing ']'");
  return false;
}

void RecordReader::check(const std::string& record, bool too_long) const {
  if (too_long)
    throw InvalidSample("line_too_long", std::string(lines_ ? "the line" : "the record") + " is longer than " +
                                             std::to_string(max_bytes_) + " bytes");
  const int64_t bad = first_invalid_utf8(record);
  if (bad >= 0) throw InvalidSample("invalid_utf8", "invalid UTF-8 at byte " + std::to_string(bad));
}

int64_t RecordReader::line_number() const { return lines_ ? lines_->line_number() : record_line_; }

std::string RecordReader::location() const {
  if (lines_) return path_ + ":" + std::to_string(lines_->line_number());
  return path_ + "[" + std::to_string(index_) + "] (line " + std::to_string(record_line_) + ")";
}

}  // namespace ringtune
