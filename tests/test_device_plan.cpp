// Device and backend rules (distributed/device_plan.h) as tables, and their refusals through the
// binary on this CPU-only machine: device cuda without a GPU, nccl for CPU tensors, --device of
// the commands.
#include <gtest/gtest.h>

#include <stdexcept>

#include "distributed/device_plan.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

TEST(DevicePlan, ChoosesTheRanksGpuModuloTheVisibleOnes) {
  struct Case {
    std::string want;
    int local_rank, local_size, gpus;
    std::string device;
    bool shared;
  };
  const std::vector<Case> cases = {
      {"auto", 0, 1, 0, "cpu", false},     {"auto", 3, 4, 0, "cpu", false},
      {"cpu", 1, 2, 8, "cpu", false},      {"auto", 0, 1, 1, "cuda:0", false},
      {"auto", 5, 8, 8, "cuda:5", false},  {"cuda", 1, 2, 8, "cuda:1", false},
      {"auto", 1, 2, 1, "cuda:0", true},   {"cuda", 3, 4, 2, "cuda:1", true},
      {"cuda", 2, 3, 2, "cuda:0", true},
  };
  for (const auto& c : cases) {
    const DeviceChoice d = choose_device(c.want, c.local_rank, c.local_size, c.gpus);
    EXPECT_EQ(d.device, c.device) << c.want << " rank " << c.local_rank << "/" << c.local_size << " gpus " << c.gpus;
    EXPECT_EQ(d.shares_gpu, c.shared) << c.want << " rank " << c.local_rank << "/" << c.local_size;
    EXPECT_EQ(d.gpu, c.device == "cpu" ? -1 : std::stoi(c.device.substr(5)));
  }
  EXPECT_THROW(choose_device("cuda", 0, 1, 0), std::invalid_argument);
  EXPECT_THROW(choose_device("gpu", 0, 1, 1), std::invalid_argument);
  try {
    choose_device("cuda", 0, 1, 0);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device is visible"), std::string::npos) << e.what();
  }
}

TEST(DevicePlan, NcclOnlyForOneRankPerGpu) {
  struct Case {
    std::string backend;
    bool cuda, shared;
    int world;
    std::string chosen;
    bool staged;
  };
  const std::vector<Case> cases = {
      {"auto", false, false, 4, "mpi", false},  // CPU tensors
      {"auto", true, false, 4, "auto", false},  // NCCL if it loads (make_communicator decides)
      {"auto", true, true, 4, "mpi", true},     // ranks share a GPU: MPI through host memory
      {"mpi", true, false, 4, "mpi", true},     // asked for: CUDA tensors staged
      {"mpi", false, false, 2, "mpi", false},
      {"nccl", true, false, 8, "nccl", false},
      {"nccl", false, false, 1, "mpi", false},  // one rank reduces nothing: no refusal
      {"nccl", true, true, 1, "mpi", false},
      {"nccl", true, false, 1, "nccl", false},  // one rank on its own GPU: NCCL works
  };
  for (const auto& c : cases) {
    const BackendChoice b = choose_backend(c.backend, c.cuda, c.shared, c.world);
    EXPECT_EQ(b.backend, c.chosen) << c.backend << " cuda " << c.cuda << " shared " << c.shared << " world " << c.world;
    EXPECT_EQ(b.staged, c.staged) << c.backend << " cuda " << c.cuda << " shared " << c.shared;
    EXPECT_FALSE(b.reason.empty());
  }
  try {
    choose_backend("nccl", true, true, 4);
    ADD_FAILURE() << "nccl accepted with ranks sharing a GPU";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run two ranks of one communicator on one GPU"), std::string::npos)
        << e.what();
  }
  try {
    choose_backend("nccl", false, false, 2);
    ADD_FAILURE() << "nccl accepted for CPU tensors";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("computes on the CPU"), std::string::npos) << e.what();
  }
  EXPECT_THROW(choose_backend("gloo", false, false, 2), std::invalid_argument);
}

namespace {

struct Workspace {
  TempDir dir{"ringtune-devices"};
  Workspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    write_file(dir.file("train.jsonl"),
               "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n"
               "{\"messages\": [{\"role\": \"user\", \"content\": \"bye\"}, {\"role\": \"assistant\", \"content\": \"see you\"}]}\n");
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\nvalid_path: train.jsonl\n"
               "context_length: 64\ngeneration_config:\n  prompt_format: llama2\ndtype: float32\nmax_steps: 1\n"
               "global_batch_size: 2\ngradient_checkpointing: false\n");
  }
  std::string cfg() const { return dir.file("cfg.yaml"); }
};

}  // namespace

TEST(DevicePlan, RefusalsThroughTheBinary) {
  Workspace w;
  const std::string out = " output_dir=" + w.dir.file("out");
  auto cuda = run_ringtune("train " + w.cfg() + out + " device=cuda");
  EXPECT_EQ(cuda.exit_code, 2) << cuda.err;
  EXPECT_NE(cuda.err.find("device: cuda, but no CUDA device is visible"), std::string::npos) << cuda.err;
  EXPECT_FALSE(std::filesystem::exists(w.dir.file("out/metrics.jsonl")));

  auto nccl = run_ringtune_mpi(2, "train " + w.cfg() + out + " distributed.backend=nccl");
  EXPECT_NE(nccl.exit_code, 0) << nccl.err;
  EXPECT_NE(nccl.err.find("distributed.backend: nccl reduces CUDA tensors, and this run computes on the CPU"),
            std::string::npos)
      << nccl.err;
  EXPECT_FALSE(std::filesystem::exists(w.dir.file("out/metrics.jsonl")));

  // One process reduces nothing: a config written for GPUs still runs here.
  auto one = run_ringtune("train " + w.cfg() + out + " distributed.backend=nccl");
  EXPECT_EQ(one.exit_code, 0) << one.err;

  for (const std::string dev : {"cuda", "cuda:1", "gpu"}) {
    auto e = run_ringtune("eval " + w.cfg() + out + " --checkpoint none --device " + dev);
    EXPECT_EQ(e.exit_code, 2) << dev << ": " << e.err;
    EXPECT_NE(e.err.find("--device"), std::string::npos) << e.err;
    auto g = run_ringtune("generate --model " + w.dir.file("base") + " --max-new-tokens 1 --device " + dev);
    EXPECT_EQ(g.exit_code, 2) << dev << ": " << g.err;
  }
  auto auto_dev = run_ringtune("eval " + w.cfg() + out + " --checkpoint none --device auto");
  EXPECT_EQ(auto_dev.exit_code, 0) << auto_dev.err;
  auto exp = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format merged --output " +
                          w.dir.file("merged") + " --device cpu");
  EXPECT_EQ(exp.exit_code, 0) << exp.err;
}
