// Bounded-memory line reading. std::getline into a std::string would grow without limit on a
// file with no newline; istream::getline into a fixed chunk lets a too-long line be skipped.
#include "src/data/jsonl_reader.h"

#include <cstring>

#include "src/error.h"

namespace ringtune {

JsonlLineReader::JsonlLineReader(const std::string& path, size_t max_line_bytes)
    : path_(path), max_line_bytes_(max_line_bytes), in_(path, std::ios::binary) {
  if (!in_) throw InputError(path + ": cannot open the file (" + std::strerror(errno) + ")");
}

bool JsonlLineReader::next(std::string& line, bool& too_long) {
  constexpr std::streamsize kChunk = 1 << 16;
  char buf[kChunk];
  line.clear();
  too_long = false;
  bool got_any = false;
  while (true) {
    in_.getline(buf, kChunk);
    const std::streamsize got = in_.gcount();
    if (in_.bad()) throw InputError(path_ + ":" + std::to_string(line_number_ + 1) + ": read error");
    size_t len = 0;
    bool done = false;
    if (!in_.fail()) {
      // A newline was consumed (counted in gcount), or the file ended after some characters.
      len = static_cast<size_t>(in_.eof() ? got : got - 1);
      done = true;
    } else if (got == 0 && in_.eof()) {
      if (!got_any) return false;  // nothing left
      done = true;
    } else if (got == kChunk - 1) {
      len = static_cast<size_t>(got);  // chunk full, the line goes on
      in_.clear(in_.rdstate() & ~std::ios::failbit);
    } else {
      throw InputError(path_ + ":" + std::to_string(line_number_ + 1) + ": read error");
    }
    got_any = true;
    if (!too_long) {
      if (line.size() + len > max_line_bytes_) {
        too_long = true;
        line.clear();
        line.shrink_to_fit();
      } else {
        line.append(buf, len);
      }
    }
    if (done) break;
  }
  ++line_number_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line_number_ == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
  return true;
}

}  // namespace ringtune
