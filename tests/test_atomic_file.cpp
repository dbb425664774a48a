// Atomic files and directories (src/io/atomic_file.h): a write is complete or absent — a failed
// or abandoned one leaves the old file and no temporary file — and a directory is replaced only
// once the new one is complete.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>

#include "src/error.h"
#include "src/io/atomic_file.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

TEST(AtomicFile, WritesTheWholeFileAndLeavesNoTemporary) {
  TempDir d("ringtune-atomic");
  atomic_write(d.file("a.json"), "{\"x\": 1}\n");
  EXPECT_EQ(read_file(d.file("a.json")), "{\"x\": 1}\n");
  atomic_write(d.file("a.json"), "second");
  EXPECT_EQ(read_file(d.file("a.json")), "second");
  EXPECT_FALSE(fs::exists(d.file("a.json.tmp")));
  atomic_copy(d.file("a.json"), d.file("b.json"));
  EXPECT_EQ(read_file(d.file("b.json")), "second");
}

TEST(AtomicFile, AnAbandonedWriteKeepsTheOldFile) {
  TempDir d("ringtune-atomic");
  write_file(d.file("f"), "old");
  {
    AtomicFile f(d.file("f"));
    f.stream() << "new, never committed";
    EXPECT_TRUE(fs::exists(f.temp_path()));
  }
  EXPECT_EQ(read_file(d.file("f")), "old");
  EXPECT_FALSE(fs::exists(d.file("f.tmp")));
}

TEST(AtomicFile, AMissingDirectoryIsAnInputErrorNamingThePath) {
  TempDir d("ringtune-atomic");
  try {
    atomic_write(d.file("no/such/dir/f"), "x");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(d.file("no/such/dir/f")), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, AFailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  // A file-size limit makes write() fail (EFBIG) as a full disk would (ENOSPC).
  TempDir d("ringtune-atomic");
  write_file(d.file("f"), "old");
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string error;
  try {
    atomic_write(d.file("f"), std::string(1 << 20, 'x'));
  } catch (const Error& e) {
    error = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(error, d.file("f") + ": file too large");  // the path and the cause, from errno
  EXPECT_EQ(read_file(d.file("f")), "old");
  EXPECT_FALSE(fs::exists(d.file("f.tmp")));
}

TEST(AtomicFile, InstallDirectoryReplacesOnlyOnceComplete) {
  TempDir d("ringtune-atomic");
  const std::string target = d.file("model");
  fs::create_directories(target);
  write_file(target + "/old.txt", "old");
  std::string scratch_path;
  {
    ScratchDir abandoned(target + ".tmp-");
    scratch_path = abandoned.path();
    write_file(scratch_path + "/half.txt", "half");
  }
  EXPECT_FALSE(fs::exists(scratch_path)) << "an abandoned build is removed";
  EXPECT_TRUE(fs::exists(target + "/old.txt"));
  ScratchDir built(target + ".tmp-");
  write_file(built.path() + "/new.txt", "new");
  install_directory(built, target);
  EXPECT_TRUE(built.path().empty());
  EXPECT_EQ(read_file(target + "/new.txt"), "new");
  EXPECT_FALSE(fs::exists(target + "/old.txt"));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(d.path())) entries += e.path().filename() != "model";
  EXPECT_EQ(entries, 0u) << "nothing left beside the target";
}
