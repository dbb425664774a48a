// Writing final files and directories so that a reader (or a resumed run) sees either the old
// one or the complete new one, never a part:
//   a file:      written under a temporary name in the same directory (PATH.tmp), flushed and
//                fsync'ed, renamed over PATH, then the directory entry fsync'ed; the temporary
//                file is removed on any failure (and by the destructor when never committed);
//   a directory: built under a scratch name beside the target (TARGET.tmp-XXXXXX, removed unless
//                installed) and renamed into place, an existing target moved aside first and
//                removed only once the new one is in place.
// Every writer of a final file goes through AtomicFile (HDF5 writes its temporary file itself and
// commits through it). Failures are errors naming the path and the system's reason
// ("out/adapter/adapter_config.json: No space left on device").
// defines: AtomicFile, atomic_write, atomic_copy, ScratchDir, install_directory, fsync_directory,
//          write_failure, check_output_dir, check_output_file
#pragma once
#include <memory>
#include <ostream>
#include <string>

namespace ringtune {

// An EnvironmentError-worthy reason for a failed write under `path`: `errno_value`'s text when it
// is a known cause (ENOSPC, EDQUOT, EROFS, EACCES, EIO), else what the filesystem of `path` says
// (no space left, read-only), else `fallback`. Lower case, e.g. "no space left on device".
std::string write_failure(const std::string& path, int errno_value, const std::string& fallback);

// Checks, before any work, that files can be created under `dir` (made later if absent): it is a
// directory or does not exist yet, and its nearest existing ancestor is a writable directory on a
// writable filesystem. InputError "<where>: <dir> ..." otherwise (`where` names the key).
void check_output_dir(const std::string& dir, const std::string& where);
// The same for a file to write: `path` is not an existing directory, and its directory passes
// check_output_dir.
void check_output_file(const std::string& path, const std::string& where);

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }
  // The temporary file, created (truncated) at the first call and written straight to its file
  // descriptor, so a failed write keeps its reason. InputError when it cannot be created (a
  // missing or read-only directory).
  std::ostream& stream();
  // Flushes the stream if open (a failed write is an Error with its reason), fsyncs the
  // temporary file, renames it to path() and fsyncs the directory.
  void commit();

 private:
  class FdBuf;
  std::string path_, temp_;
  std::unique_ptr<FdBuf> buf_;
  std::unique_ptr<std::ostream> out_;
  bool committed_ = false;
};

// `content` as the whole of `path`, atomically.
void atomic_write(const std::string& path, const std::string& content);
// A copy of `from` as `to`, atomically.
void atomic_copy(const std::string& from, const std::string& to);

// A new directory PREFIXxxxxxx (mkdtemp), removed with its contents on destruction unless
// released (install_directory releases it).
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Renames `built` to `target` with the permissions mkdir gives (0777 less the umask; mkdtemp made
// it 0700). An existing `target` is moved aside first and removed only once `built` is in place
// (restored if the rename fails). The parent directory is fsync'ed.
void install_directory(ScratchDir& built, const std::string& target);

// fsync of a directory, so that a rename or a new entry in it survives a crash.
void fsync_directory(const std::string& dir);

}  // namespace ringtune
