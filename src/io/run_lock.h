// One run per output directory: an exclusive flock(2) on OUTPUT_DIR/.lock, held by rank 0 for the
// whole run. The kernel drops it when the process ends however it ends (kill -9 included), so a
// lock is never stale; the file keeps "host pid" of the holder for the message a second run gets.
// On a shared filesystem this works across nodes as far as flock does there (NFSv4 and Lustre with
// flock enabled: yes; NFSv3 without lockd, or a mount with local-only locks: no).
// defines: RunLock
#pragma once
#include <string>

namespace ringtune {

class RunLock {
 public:
  // Takes the lock or throws InputError "<where>: <dir> is in use by another ringtune run (host H,
  // pid P) ...". `dir` must exist. `created_dir`: this run made `dir`; if the run ends with nothing
  // in it but the lock file (a bad input found before anything was written), both are removed.
  RunLock(const std::string& dir, const std::string& where, bool created_dir = false);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
  std::string dir_;
  bool created_dir_ = false;
};

}  // namespace ringtune
