// One run per output directory: an exclusive flock(2) on OUTPUT_DIR/.lock, held by rank 0 for the
// whole run. The kernel drops it when the process ends however it ends (kill -9 included), so a
// lock is never stale; the file keeps "host pid" of the holder for the message a second run gets.
// On a shared filesystem this works across nodes as far as flock does there (NFSv4 and Lustre with
// flock enabled: yes; NFSv3 without lockd, or a mount with local-only locks: no).
// defines: RunLock, remove_made_directories, outermost_missing_directory
#pragma once
#include <string>

namespace ringtune {

// The outermost directory that creating `dir` (with its parents) would make: `dir` itself or a
// missing parent of it; empty when `dir` exists.
std::string outermost_missing_directory(const std::string& dir);

// Removes `dir` and its parents up to `top` (absolute or relative, as `dir`), each only while it is
// an empty directory; a missing one is skipped. For the directories a refused run made.
void remove_made_directories(const std::string& dir, const std::string& top);

class RunLock {
 public:
  // Takes the lock or throws InputError "<where>: <dir> is in use by another ringtune run (host H,
  // pid P) ...". `dir` must exist. `created_top`: the outermost directory this run made on the way
  // to `dir` (`dir` itself, or a parent that did not exist either; empty: none). If the run ends
  // with nothing in `dir` but the lock file (a bad input found before anything was written), the
  // lock and the directories it made, up to `created_top`, are removed (each only when empty).
  RunLock(const std::string& dir, const std::string& where, const std::string& created_top = "");
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
  std::string dir_;
  std::string created_top_;
};

}  // namespace ringtune
