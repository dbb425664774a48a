// Atomic files and directories; see atomic_file.h.
#include "src/io/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include "src/error.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

std::string reason() { return std::strerror(errno); }

std::string parent_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw EnvironmentError(path + ": cannot open to flush: " + reason());
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    throw EnvironmentError(path + ": " + write_failure(path, e, std::string("fsync failed: ") + std::strerror(e)));
  }
  ::close(fd);
}

std::string lowered(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

std::string write_failure(const std::string& path, int errno_value, const std::string& fallback) {
  if (errno_value == ENOSPC || errno_value == EDQUOT || errno_value == EROFS || errno_value == EACCES ||
      errno_value == EIO || errno_value == EFBIG || errno_value == EPERM)
    return lowered(std::strerror(errno_value));
  // HDF5 does not pass errno on: ask the filesystem (the nearest existing directory), first by
  // creating a file there as the writer would (an immutable directory, a permission).
  fs::path dir = fs::path(path).parent_path();
  std::error_code ec;
  while (!dir.empty() && !fs::exists(dir, ec)) dir = dir.parent_path();
  {
    std::string probe = ((dir.empty() ? fs::path(".") : dir) / ".ringtune-probe-XXXXXX").string();
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) return lowered(std::strerror(errno));
    ::close(fd);
    ::unlink(probe.c_str());
  }
  struct statvfs st;
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &st) == 0) {
    if (st.f_flag & ST_RDONLY) return lowered(std::strerror(EROFS));
    if (static_cast<double>(st.f_bavail) * static_cast<double>(st.f_bsize) < 1024.0 * 1024.0)
      return lowered(std::strerror(ENOSPC));
  }
  return fallback;
}

void check_output_dir(const std::string& dir, const std::string& where) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  const fs::file_status st0 = fs::status(p, ec);
  if (ec && st0.type() != fs::file_type::not_found)  // a name too long, a symbolic link loop, ...
    throw InputError(where + ": " + dir + ": " + ec.message());
  if (fs::exists(st0) && !fs::is_directory(st0))
    throw InputError(where + ": " + dir + " exists and is not a directory");
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty()) p = ".";
  if (!fs::is_directory(p, ec))
    throw InputError(where + ": " + dir + " cannot be created: " + p.string() + " is not a directory");
  struct statvfs st;
  if (::statvfs(p.c_str(), &st) == 0 && (st.f_flag & ST_RDONLY))
    throw InputError(where + ": " + dir + " is on a read-only file system (" + p.string() + ")");
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    throw InputError(where + ": " + dir + " is not writable (" + p.string() + ": " + lowered(reason()) + ")");
}

void check_output_file(const std::string& path, const std::string& where) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(where + ": " + path + " is a directory; give a file name");
  const fs::path parent = fs::absolute(path, ec).parent_path();
  check_output_dir(parent.string(), where);
}

// ---------------------------------------------------------------------------------------------
// Files

// An output buffer over a file descriptor that remembers why a write failed (errno), which
// std::ofstream does not tell.
class AtomicFile::FdBuf : public std::streambuf {
 public:
  explicit FdBuf(int fd) : fd_(fd), buffer_(size_t{1} << 16) { reset(); }
  ~FdBuf() override { close(); }
  int error() const { return error_; }
  // Writes what is buffered; false (and error()) on failure.
  bool flush_buffer() {
    if (error_) return false;
    const bool ok = write_all(pbase(), static_cast<size_t>(pptr() - pbase()));
    reset();
    return ok;
  }
  int fd() const { return fd_; }
  // Closes the descriptor; false (and error()) on failure.
  bool close() {
    if (fd_ < 0) return true;
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0 && !error_) error_ = errno;
    return rc == 0;
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (static_cast<size_t>(n) < buffer_.size()) return std::streambuf::xsputn(s, n);
    // Large blocks (tensor data) go straight to the file.
    if (!flush_buffer() || !write_all(s, static_cast<size_t>(n))) return 0;
    return n;
  }
  int sync() override { return flush_buffer() ? 0 : -1; }

 private:
  void reset() { setp(buffer_.data(), buffer_.data() + buffer_.size()); }
  bool write_all(const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  std::vector<char> buffer_;
  int error_ = 0;
};

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temp_(path_ + ".tmp") {}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.reset();
  buf_.reset();  // closes the descriptor
  std::remove(temp_.c_str());
}

std::ostream& AtomicFile::stream() {
  if (!out_) {
    std::error_code ec;
    if (fs::is_directory(path_, ec)) throw InputError(path_ + ": is a directory; give a file name");
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) throw InputError(path_ + ": cannot open for writing (" + reason() + ")");
    buf_ = std::make_unique<FdBuf>(fd);
    out_ = std::make_unique<std::ostream>(buf_.get());
  }
  return *out_;
}

void AtomicFile::commit() {
  if (committed_) throw Error(path_ + ": committed twice");
  if (buf_) {
    buf_->flush_buffer();
    if (buf_->error() == 0 && ::fsync(buf_->fd()) != 0)
      throw EnvironmentError(path_ + ": " + write_failure(path_, errno, "fsync failed: " + reason()));
    buf_->close();
    if (buf_->error() != 0)
      throw EnvironmentError(path_ + ": " + write_failure(path_, buf_->error(), std::strerror(buf_->error())));
  } else {
    fsync_file(temp_);  // written by someone else (HDF5)
  }
  if (std::rename(temp_.c_str(), path_.c_str()) != 0)
    throw EnvironmentError(temp_ + ": cannot rename to " + path_ + ": " + reason());
  committed_ = true;
  fsync_directory(parent_of(path_));
}

void atomic_write(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.stream().write(content.data(), static_cast<std::streamsize>(content.size()));
  f.commit();
}

void atomic_copy(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw InputError(from + ": cannot open for reading");
  AtomicFile f(to);
  f.stream() << in.rdbuf();
  if (in.bad()) throw Error(from + ": read failed");
  f.commit();
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // nothing to flush through (the entry is there; durability is best effort)
  ::fsync(fd);         // EINVAL on filesystems without directory fsync: nothing more to do
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// Directories

ScratchDir::ScratchDir(const std::string& prefix) {
  std::string tmpl = prefix + "XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw InputError("cannot create a directory beside " + prefix + ": " + reason());
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void install_directory(ScratchDir& built, const std::string& target) {
  const mode_t mask = ::umask(0);
  ::umask(mask);
  fs::permissions(built.path(), static_cast<fs::perms>(0777 & ~mask));
  std::error_code ec;
  if (!fs::exists(target, ec)) {
    fs::rename(built.path(), target);
  } else {
    ScratchDir old(target + ".old-");
    fs::remove(old.path());
    fs::rename(target, old.path());
    try {
      fs::rename(built.path(), target);
    } catch (...) {
      fs::rename(old.path(), target, ec);
      old.release();
      throw;
    }
  }
  built.release();
  fsync_directory(parent_of(target));
}

}  // namespace ringtune
