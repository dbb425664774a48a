// The output directory's run lock; see run_lock.h.
#include "src/io/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/error.h"

namespace ringtune {

namespace {

std::string read_holder(int fd) {
  char buf[256] = {0};
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  const size_t space = s.find(' ');
  if (s.empty() || space == std::string::npos) return "holder unknown";
  return "host " + s.substr(0, space) + ", pid " + s.substr(space + 1);
}

}  // namespace

std::string outermost_missing_directory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string top;
  for (fs::path d = fs::absolute(dir, ec).lexically_normal(); !ec && !d.empty() && !fs::exists(d, ec); d = d.parent_path()) {
    top = d.string();
    if (d == d.parent_path()) break;
  }
  return top;
}

void remove_made_directories(const std::string& dir, const std::string& top) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path last = fs::absolute(top, ec).lexically_normal();
  if (ec || top.empty()) return;
  for (fs::path d = fs::absolute(dir, ec).lexically_normal(); !ec && !d.empty(); d = d.parent_path()) {
    const bool gone = !fs::exists(fs::symlink_status(d, ec));
    if (!gone && (!fs::is_directory(fs::symlink_status(d, ec)) || !fs::remove(d, ec))) break;  // not an empty directory
    if (d == last || d == d.parent_path()) break;
  }
}

RunLock::RunLock(const std::string& dir, const std::string& where, const std::string& created_top)
    : dir_(dir), created_top_(created_top) {
  const std::string path = (std::filesystem::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw EnvironmentError(path + ": cannot open the run lock: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    const std::string holder = e == EWOULDBLOCK ? read_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (e == EWOULDBLOCK)
      throw InputError(where + ": " + dir + " is in use by another ringtune run (" + holder +
                       "); wait for it to end or choose another output_dir");
    throw EnvironmentError(path + ": cannot lock: " + std::strerror(e));
  }
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  const std::string holder = std::string(host) + " " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, holder.data(), holder.size(), 0) < 0) {
    // The lock holds without the note; a second run then says "holder unknown".
  }
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  bool only_lock = !created_top_.empty();
  for (auto it = fs::directory_iterator(dir_, ec); only_lock && !ec && it != fs::directory_iterator(); it.increment(ec))
    only_lock = it->path().filename() == ".lock";
  if (only_lock && !ec) {  // unlinked while still held, so no other run can take it in between
    fs::remove(fs::path(dir_) / ".lock", ec);
    remove_made_directories(dir_, created_top_);
  }
  ::close(fd_);  // releases the lock
}

}  // namespace ringtune
