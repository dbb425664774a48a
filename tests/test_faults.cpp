// Environment faults and numbers that are not numbers, through the binary: a full disk (a small
// tmpfs, where this process may mount one) while preparing and while checkpointing, a read-only
// output directory and one that is a file, a second run on a locked output directory, a config
// string that is not UTF-8, and a loss that becomes NaN. Each ends with one clear line, the right
// exit code, nothing half-written, and a run that resumes once the fault is gone.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "src/error.h"
#include "src/io/checkpoint.h"
#include "src/train/metrics.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

struct FaultWorkspace {
  TempDir dir{"ringtune-faults"};
  FaultWorkspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    write_file(dir.file("train.jsonl"), weather_chats(24));
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\noutput_dir: out\ndtype: float32\n"
               "context_length: 64\ngeneration_config:\n  prompt_format: llama2\nlearning_rate: 0.01\n"
               "global_batch_size: 4\ntrain_batch_size_per_device: 2\nmax_steps: 4\nseed: 5\n"
               "gradient_checkpointing: false\nlora_config:\n  r: 4\n  target_modules: [q_proj, v_proj]\n");
  }
  std::string cfg() const { return dir.file("cfg.yaml"); }
};

// A tmpfs of `size` at `where`, unmounted at the end; mounted() is false where that is not allowed.
class SmallDisk {
 public:
  SmallDisk(const std::string& where, const std::string& size, bool read_only = false) : where_(where) {
    fs::create_directories(where);
    const std::string opts = "size=" + size;
    mounted_ = ::mount("tmpfs", where.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, opts.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool grow(const std::string& size) {
    const std::string opts = "size=" + size;
    return ::mount("tmpfs", where_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0;
  }

 private:
  std::string where_;
  bool mounted_ = false;
};

int lines_of(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Files under `dir` whose name ends with ".tmp" (or holds ".tmp-").
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (name.size() > 4 && (name.compare(name.size() - 4, 4, ".tmp") == 0 || name.find(".tmp-") != std::string::npos))
      out.push_back(it->path().string());
  }
  return out;
}

// The error lines of a run's stderr (log lines have "[hh:mm:ss level]").
std::string error_lines(const std::string& err) {
  std::string out, line;
  for (char c : err) {
    if (c != '\n') {
      line += c;
      continue;
    }
    if (line.rfind("error: ", 0) == 0 || line.rfind("internal error: ", 0) == 0) out += line + "\n";
    line.clear();
  }
  return out;
}

}  // namespace

TEST(Faults, DiskFullWhilePreparingLeavesNothingAndSaysSo) {
  FaultWorkspace w;
  SmallDisk disk(w.dir.file("disk"), "16k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string out = w.dir.file("disk/out");
  auto r = run_ringtune("train " + w.cfg() + " output_dir=" + out);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("error: " + out + "/prepared/train.h5: no space left on device"), std::string::npos) << r.err;
  EXPECT_TRUE(temporaries(w.dir.file("disk")).empty());
  EXPECT_FALSE(fs::exists(out + "/prepared")) << "an empty prepared/ was left";
  // With room, the same command runs.
  ASSERT_TRUE(disk.grow("64m"));
  r = run_ringtune("train " + w.cfg() + " output_dir=" + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Faults, DiskFullWhileCheckpointingKeepsLatestAndResumes) {
  FaultWorkspace w;
  SmallDisk disk(w.dir.file("disk"), "4m");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string out = w.dir.file("disk/out");
  // Step 2's checkpoint fits; a ballast file then fills the disk, so step 4's does not.
  auto r = run_ringtune("train " + w.cfg() + " output_dir=" + out + " checkpoint_every_n_steps=2 max_steps=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    std::string ballast(1 << 16, 'x');
    std::FILE* f = std::fopen(w.dir.file("disk/ballast").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    while (std::fwrite(ballast.data(), 1, ballast.size(), f) == ballast.size()) {
    }
    std::fclose(f);
  }
  // Continue to step 4 (max_steps differs, so start a fresh run over the same data instead).
  r = run_ringtune("train " + w.cfg() + " output_dir=" + out + " checkpoint_every_n_steps=2 max_steps=2 resume=none");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("no space left on device"), std::string::npos) << r.err;
  EXPECT_TRUE(temporaries(w.dir.file("disk")).empty());
  CheckpointState st;
  EXPECT_FALSE(find_resume_checkpoint(out, st).empty()) << "latest must still load";
  EXPECT_EQ(st.step, 2);
  fs::remove(w.dir.file("disk/ballast"));
  r = run_ringtune("train " + w.cfg() + " output_dir=" + out + " checkpoint_every_n_steps=2 max_steps=2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Faults, OutputDirThatCannotBeWrittenIsRefusedBeforeAnyWork) {
  FaultWorkspace w;
  write_file(w.dir.file("a_file"), "x");
  auto r = run_ringtune("train " + w.cfg() + " output_dir=" + w.dir.file("a_file"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(error_lines(r.err), "error: command line: override \"output_dir=" + w.dir.file("a_file") +
                                    "\": output_dir: " + w.dir.file("a_file") + " exists and is not a directory\n")
      << r.err;
  EXPECT_EQ(r.err.find("prepared"), std::string::npos) << "work was done before the check: " << r.err;
  r = run_ringtune("prepare " + w.cfg() + " output_dir=" + w.dir.file("a_file") + "/sub");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is not a directory"), std::string::npos) << r.err;

  SmallDisk ro(w.dir.file("ro"), "1m", /*read_only=*/true);
  if (!ro.mounted()) GTEST_SKIP() << "cannot mount a read-only tmpfs here";
  r = run_ringtune("train " + w.cfg() + " output_dir=" + w.dir.file("ro/out"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(error_lines(r.err).find(": output_dir: " + w.dir.file("ro/out") + " is on a read-only file system"),
            std::string::npos)
      << r.err;
  r = run_ringtune("eval " + w.cfg() + " output_dir=" + w.dir.file("ro/out"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is on a read-only file system"), std::string::npos) << r.err;
}

TEST(Faults, ASecondRunOnALockedOutputDirIsRefusedNamingTheHolder) {
  FaultWorkspace w;
  const std::string out = w.dir.file("out");
  fs::create_directories(out);
  const int fd = ::open((out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string holder = "otherhost 4242\n";
  ASSERT_EQ(::pwrite(fd, holder.data(), holder.size(), 0), static_cast<ssize_t>(holder.size()));
  auto r = run_ringtune("train " + w.cfg());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(error_lines(r.err).find(out + " is in use by another ringtune run (host otherhost, pid 4242)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
  ::close(fd);  // the holder ends: the lock goes with it
  r = run_ringtune("train " + w.cfg());
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// prepare takes output_dir's run lock as train does (it rebuilt a cache under a running train),
// and on ranks other than 0 of an mpirun launch it leaves the work to rank 0 (both ranks built the
// same cache and failed).
TEST(Faults, PrepareRespectsTheRunLockAndRunsOnRankZeroOnly) {
  FaultWorkspace w;
  const std::string out = w.dir.file("out");
  auto other = run_shell("OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 " + ringtune_binary() + " prepare " + w.cfg());
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_FALSE(fs::exists(out)) << "rank 1 prepared";
  fs::create_directories(out);
  const int fd = ::open((out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto r = run_ringtune("prepare " + w.cfg() + " --force");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(error_lines(r.err).find(out + " is in use by another ringtune run"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out + "/prepared"));
  ::close(fd);
  r = run_ringtune("prepare " + w.cfg());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/prepared/train.h5"));
}

// logging.per_rank_files where OUTPUT_DIR/rank0.log cannot be a file: one error line at the key
// (it was "internal error: Failed opening file ...").
TEST(Faults, APerRankLogThatCannotBeWrittenIsRefusedAtItsKey) {
  FaultWorkspace w;
  fs::create_directories(w.dir.file("out/rank0.log"));
  auto r = run_ringtune("train " + w.cfg() + " logging.per_rank_files=true");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_EQ(errors.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(errors.find("logging.per_rank_files"), std::string::npos) << r.err;
  EXPECT_NE(errors.find("rank0.log"), std::string::npos) << r.err;
}

// Samples the data holds that training will not see (longer than context_length) are reported by
// train as prepare reports them, and again when the cache is reused. Before, train said only how
// many samples it prepared.
TEST(Faults, SamplesTrainingLeavesOutAreReportedByTrain) {
  FaultWorkspace w;
  std::string long_reply;
  for (int i = 0; i < 200; ++i) long_reply += "word ";
  write_file(w.dir.file("train.jsonl"),
             read_file(w.dir.file("train.jsonl")) + "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                                                       "{\"role\":\"assistant\",\"content\":\"" + long_reply + "\"}]}\n");
  for (int run = 0; run < 2; ++run) {  // built, then reused
    auto r = run_ringtune("train " + w.cfg() + " max_steps=1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("1 dropped as longer than context_length"), std::string::npos) << r.err;
  }
}

TEST(Faults, ConfigStringsMustBeUtf8) {
  FaultWorkspace w;
  write_file(w.dir.file("bad.yaml"), read_file(w.cfg()) + "model_id: caf\xe9\n");
  auto r = run_ringtune("train " + w.dir.file("bad.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(error_lines(r.err), "error: " + w.dir.file("bad.yaml") +
                                    ":17: key \"model_id\": the value is not valid UTF-8 (byte 0xE9 at offset 3)\n")
      << r.err;
  EXPECT_FALSE(fs::exists(w.dir.file("out")));
}

TEST(Faults, ANonFiniteLossStopsWithoutACheckpointOfTheBadState) {
  FaultWorkspace w;
  // Step 2's loss is NaN (injected on rank 0; a NaN weight does the same, see below).
  const std::string run = "train " + w.cfg() + " checkpoint_every_n_steps=1";
  auto r = run_shell("RINGTUNE_TEST_FAULT=nan:0:2 " + ringtune_binary() + " " + run);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("error: step 2: the loss is "), std::string::npos) << r.err;
  EXPECT_NE(errors.find("training stopped (on_nonfinite: stop)"), std::string::npos) << r.err;
  const auto left = list_checkpoints(w.dir.file("out"));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(fs::path(left[0]).filename(), "step-00000001.h5");
  EXPECT_FALSE(fs::exists(w.dir.file("out/adapter")));
  // skip_step drops those steps, says so, and finishes.
  r = run_shell("RINGTUNE_TEST_FAULT=nan:0:2 " + ringtune_binary() + " " + run +
                " on_nonfinite=skip_step output_dir=" + w.dir.file("out2"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 2: loss nan gradient norm"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the optimizer step is skipped (on_nonfinite: skip_step; 1 so far)"), std::string::npos) << r.err;

  // A NaN in the base weights is refused at load, naming the file and the tensor, before any data
  // is prepared and before anything is written.
  std::string weights = read_file(w.dir.file("base/model.safetensors"));
  const uint64_t header = *reinterpret_cast<const uint64_t*>(weights.data());
  const float nan = std::nanf("");
  std::memcpy(&weights[8 + header], &nan, sizeof(nan));  // the first value of the first stored tensor
  write_file(w.dir.file("base/model.safetensors"), weights);
  r = run_ringtune(run + " output_dir=" + w.dir.file("out3"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const std::string line = error_lines(r.err);
  EXPECT_EQ(lines_of(line), 1) << r.err;
  EXPECT_NE(line.find("error: " + w.dir.file("base/model.safetensors") + ": tensor \""), std::string::npos) << r.err;
  EXPECT_NE(line.find("holds 1 NaN and 0 infinite value(s)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(w.dir.file("out3"))) << "the refused run left its output directory";
}

TEST(Faults, AStopSignalWhilePreparingExits143AndLeavesNothing) {
  FaultWorkspace w;
  for (const std::string cmd : {"prepare", "train"}) {
    auto r = run_shell("RINGTUNE_TEST_TERM_IN_PREPARE=5 " + ringtune_binary() + " " + cmd + " " + w.cfg());
    EXPECT_EQ(r.exit_code, 143) << cmd << ": " << r.err;
    const std::string errors = error_lines(r.err);
    EXPECT_EQ(lines_of(errors), 1) << r.err;
    EXPECT_NE(errors.find("error: interrupted by SIGTERM while preparing " + w.dir.file("out/prepared/train.h5") +
                          " (5 samples of "),
              std::string::npos)
        << r.err;
    EXPECT_NE(errors.find("nothing was written; run again to prepare it"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(w.dir.file("out"))) << cmd << " left its output directory";
  }
  auto r = run_ringtune("train " + w.cfg());
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// Counting a run's steps packs each of its epochs once before the first step (up to 10000 of
// them, minutes on a large dataset): a stop signal then ends the run at once. Before, planning
// did not look at the signal, and with num_epochs near INT64_MAX it never ended.
TEST(Faults, AStopSignalWhilePlanningTheEpochsExits143AndLeavesNothing) {
  FaultWorkspace w;
  const std::string run = "train " + w.cfg() + " max_steps= num_epochs=10";
  auto r = run_shell("RINGTUNE_TEST_TERM_IN_PLANNING=3 " + ringtune_binary() + " " + run);
  EXPECT_EQ(r.exit_code, 143) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("error: interrupted by SIGTERM while planning the run's epochs; nothing was trained"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(w.dir.file("out"))) << "the stopped run left its output directory";
  r = run_ringtune(run);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Faults, ResumeAutoWithCheckpointsOfWhichNoneLoadsIsAnError) {
  FaultWorkspace w;
  auto r = run_ringtune("train " + w.cfg() + " checkpoint_every_n_steps=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto kept = list_checkpoints(w.dir.file("out"));
  ASSERT_EQ(kept.size(), 2u);
  for (const auto& c : kept) {  // both cut in half
    const std::string bytes = read_file(c);
    write_file(c, bytes.substr(0, bytes.size() / 2));
  }
  r = run_ringtune("train " + w.cfg() + " checkpoint_every_n_steps=2 max_steps=6");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("resume: auto found checkpoints but none loads (step-00000004.h5, step-00000002.h5); fix or "
                        "remove them, or set resume: none to start over"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(metrics_losses(w.dir.file("out")).size(), 4u) << "the refused run wrote metrics";
  r = run_ringtune("train " + w.cfg() + " checkpoint_every_n_steps=2 resume=none");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A write that fails at the end of training, once the last checkpoint is written (here: no file
// may grow, as when a quota runs out): exit 1, an environment fault, not bad input; the previous
// run's adapter stays whole (the new one is built beside it and renamed into place), and the
// checkpoint of the last step can be exported.
TEST(Faults, AFailedWriteOfTheResultKeepsThePreviousOneAndSaysSo) {
  FaultWorkspace w;
  auto r = run_ringtune("train " + w.cfg());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string adapter = w.dir.file("out/adapter");
  const std::string weights = read_file(adapter + "/adapter_model.safetensors");
  const std::string config = read_file(adapter + "/adapter_config.json");
  // Files may not pass 64 KiB, which leaves room for the error line in the captured stderr but not
  // for this adapter (rank 64 on every projection: 229 KiB).
  r = run_shell("RINGTUNE_TEST_FILE_LIMIT_AT_EXPORT=65536 " + ringtune_binary() + " train " + w.cfg() +
                " resume=none max_steps=2 lora_config.r=64 lora_config.target_modules=all-linear");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_EQ(errors.rfind("error: " + adapter + ": not written (", 0), 0u) << r.err;
  EXPECT_NE(errors.find("file too large); the last checkpoint holds the result: ringtune export --checkpoint"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_file(adapter + "/adapter_model.safetensors"), weights);
  EXPECT_EQ(read_file(adapter + "/adapter_config.json"), config);
  EXPECT_TRUE(temporaries(w.dir.file("out")).empty());
  r = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format peft --output " + w.dir.file("again"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("(step 2)"), std::string::npos) << r.err;
}

// metrics.jsonl on a disk that fills: the line that cannot be written ends the run (exit 1 through
// main) naming the file, the step and the reason, rather than leaving later steps unrecorded.
TEST(Faults, AMetricsLineThatCannotBeWrittenIsAnEnvironmentError) {
  FaultWorkspace w;
  SmallDisk disk(w.dir.file("disk"), "8k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string path = w.dir.file("disk/metrics.jsonl");
  MetricsLog log(path, /*writer=*/true, 0, 1000000);
  StepMetrics m;
  std::string error;
  for (m.step = 1; m.step <= 1000 && error.empty(); ++m.step) {
    try {
      log.record(m);
    } catch (const EnvironmentError& e) {
      error = e.what();
    }
  }
  ASSERT_FALSE(error.empty()) << "1000 lines fitted in 8 KiB";
  EXPECT_EQ(error.rfind(path + ": cannot write step ", 0), 0u) << error;
  EXPECT_NE(error.find(": no space left on device"), std::string::npos) << error;
}

// A run refused after it made its output_dir (here: `resume` names an HDF5 file that is not a
// checkpoint, which only loading it can tell) removes the directories it made, the parents it
// made on the way included; one that was there before stays.
TEST(Faults, ARefusedRunRemovesTheDirectoriesItMadeParentsIncluded) {
  FaultWorkspace w;
  auto first = run_ringtune("train " + w.cfg() + " max_steps=1");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string not_a_checkpoint = w.dir.file("out/prepared/train.h5");
  ASSERT_TRUE(fs::exists(not_a_checkpoint));
  fs::create_directories(w.dir.file("kept"));
  for (const std::string out : {"new/deeper/out", "kept/new/out"}) {
    auto r = run_ringtune("train " + w.cfg() + " output_dir=" + w.dir.file(out) + " resume=" + not_a_checkpoint);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(error_lines(r.err).find("not a ringtune checkpoint"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(w.dir.file("new"))) << "the refused run left the parents it made";
  EXPECT_TRUE(fs::exists(w.dir.file("kept")));
  EXPECT_FALSE(fs::exists(w.dir.file("kept/new")));
}

TEST(Faults, DiskFullWhileExportingLeavesNothing) {
  FaultWorkspace w;
  auto r = run_ringtune("train " + w.cfg() + " checkpoint_every_n_steps=4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SmallDisk disk(w.dir.file("disk"), "64k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string out = w.dir.file("disk/merged");
  r = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format merged --output " + out);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string errors = error_lines(r.err);
  EXPECT_EQ(lines_of(errors), 1) << r.err;
  EXPECT_NE(errors.find("no space left on device"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(w.dir.file("disk"))) << "export left something on the full disk";
  ASSERT_TRUE(disk.grow("64m"));
  r = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format merged --output " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}
