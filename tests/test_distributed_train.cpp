// `mpirun -np N ringtune train` on a tiny model: per-step losses and final trainable tensors (and
// AdamW moments) equal the single-process run at N = 2, 3, 4 for ZeRO stages 0 and 1, LoRA and
// full fine-tuning; elastic resume (2 -> 3 -> 1 ranks, 4 -> 1) continues as if uninterrupted;
// every sample is seen exactly once per epoch; a killed or failing rank takes every rank down
// (no hang: well within kNoHangSeconds) and the run resumes; SIGTERM to every rank writes a
// checkpoint and exits 143; ranks started with different configurations are refused; the
// watchdog ends a job whose rank stopped or hangs, and slow checkpoints do not trip it. Global batch 5 so slices are uneven.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "src/io/prepared_dataset.h"
#include "src/train/packing.h"
#include "src/io/checkpoint.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

constexpr double kRelTol = 1e-5;

struct DistWorkspace {
  TempDir dir{"ringtune-dist"};
  DistWorkspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    std::string lines;
    const char* cities[] = {"Berlin", "Paris", "Rome", "Madrid", "Oslo", "Vienna", "Lisbon", "Prague", "Bern"};
    for (int i = 0; i < 43; ++i) {
      const std::string city = cities[i % 9];
      // Lengths vary, so packing differs from epoch to epoch.
      const std::string ask = i % 5 == 0 ? "Could you tell me what the weather will be like in " + city +
                                               " this afternoon, and whether I need an umbrella?"
                              : i % 2   ? "Weather in " + city + "?"
                                        : "How warm is it in " + city + " today?";
      nlohmann::json sample = {{"messages", {{{"role", "user"}, {"content", ask}},
                                             {{"role", "assistant"}, {"content", "weather(location=\"" + city + "\")"}}}}};
      lines += sample.dump() + "\n";
    }
    write_file(dir.file("train.jsonl"), lines);
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: " + dir.file("base") + "\ntrain_path: " + dir.file("train.jsonl") +
                   "\ndtype: float32\ncontext_length: 64\ngeneration_config:\n  prompt_format: llama2\n"
                   "learning_rate: 0.01\nlr_scheduler_type: cosine\nnum_warmup_steps: 2\nglobal_batch_size: 5\n"
                   "train_batch_size_per_device: 2\nnum_epochs: 1\nseed: 11\npacking: false\n"
                   "gradient_checkpointing: false\nmax_grad_norm: 1.0\nweight_decay: 0.01\ndevice: cpu\n");
  }
  std::string cfg() const { return dir.file("cfg.yaml"); }
};

const char* kLora = " lora_config.r=4 lora_config.lora_alpha=8 lora_config.target_modules=all-linear lora_config.lora_dropout=0";

std::vector<double> losses(const std::string& out) { return metrics_losses(out); }

CheckpointState final_state(const std::string& out) {
  CheckpointState st;
  const std::string path = find_resume_checkpoint(out, st);
  if (path.empty()) throw std::runtime_error(out + ": no checkpoint");
  return st;
}

double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double n = b.to(torch::kFloat64).norm().item<double>();
  const double d = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).norm().item<double>();
  return n > 0 ? d / n : d;
}

// Per-step losses and final tensors (trainable and AdamW moments) of `out` against `ref`, the
// tensors within `tensor_tol` (relative norm).
void expect_same_run(const std::string& out, const std::string& ref, const std::string& what,
                     double tensor_tol = kRelTol) {
  const auto l = losses(out), r = losses(ref);
  ASSERT_EQ(l.size(), r.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const double rel = std::abs(l[i] - r[i]) / std::abs(r[i]);
    worst = std::max(worst, rel);
    EXPECT_LT(rel, kRelTol) << what << " step " << i + 1 << ": " << l[i] << " vs " << r[i];
  }
  const auto a = final_state(out), b = final_state(ref);
  EXPECT_EQ(a.step, b.step) << what;
  EXPECT_EQ(a.adam_step, b.adam_step) << what;
  std::map<std::string, torch::Tensor> want;
  for (const auto& [n, t] : b.trainable) want[n] = t;
  for (const auto& [n, t] : b.optimizer) want[n] = t;
  ASSERT_EQ(a.trainable.size() + a.optimizer.size(), want.size()) << what;
  double worst_t = 0;
  for (const auto* list : {&a.trainable, &a.optimizer}) {
    for (const auto& [n, t] : *list) {
      ASSERT_TRUE(want.count(n)) << what << ": " << n;
      const double d = rel_diff(t, want[n]);
      worst_t = std::max(worst_t, d);
      EXPECT_LT(d, tensor_tol) << what << ": " << n;
    }
  }
  std::cout << "[ " << what << " ] worst relative loss diff " << worst << ", worst relative tensor diff " << worst_t
            << "\n";
}

// 8-bit moments: the 1e-7 differences of summing gradients in another order flip an occasional
// code by one step of the 8-bit map, which moves the tensors by up to ~3e-5 relative (losses stay
// within kRelTol).
double tensor_tolerance(const std::string& mode) { return mode.find("8bit") != std::string::npos ? 1e-4 : kRelTol; }

void expect_equivalent_at_every_world_size(const std::string& mode) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref");
  auto r = run_ringtune("train " + w.cfg() + " output_dir=" + ref + mode);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(losses(ref).size(), 9u);  // 43 samples / 5 per step
  EXPECT_LT(losses(ref).back(), losses(ref).front());
  for (int zero : {0, 1}) {
    for (int np = (zero == 0 ? 2 : 1); np <= 4; ++np) {
      const std::string out = w.dir.file("np" + std::to_string(np) + "z" + std::to_string(zero));
      auto d = run_ringtune_mpi(np, "train " + w.cfg() + " output_dir=" + out + " distributed.zero_stage=" +
                                        std::to_string(zero) + mode);
      ASSERT_EQ(d.exit_code, 0) << "np " << np << " zero " << zero << ": " << d.err;
      expect_same_run(out, ref, "np=" + std::to_string(np) + " zero_stage=" + std::to_string(zero),
                      tensor_tolerance(mode));
    }
  }
}

}  // namespace

TEST(DistributedTrain, LoraAtOneToFourRanksEqualsOneProcess) { expect_equivalent_at_every_world_size(kLora); }

TEST(DistributedTrain, FullFineTuningAtOneToFourRanksEqualsOneProcess) {
  expect_equivalent_at_every_world_size(" learning_rate=0.002");
}

namespace {

// Runs `stages` of (np, stop after step) in turn on one output_dir (resume: auto), the last one
// to the end, and compares with the uninterrupted single-process run.
void expect_elastic(const std::vector<std::pair<int, int>>& stages, const std::string& mode, int zero) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref"), out = w.dir.file("elastic");
  auto r = run_ringtune("train " + w.cfg() + " output_dir=" + ref + mode);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& [np, stop_at] : stages) {
    const std::string env = stop_at > 0 ? "RINGTUNE_TEST_TERM_AT_STEP=" + std::to_string(stop_at) : "";
    auto d = run_ringtune_mpi(np, "train " + w.cfg() + " output_dir=" + out + " distributed.zero_stage=" +
                                      std::to_string(zero) + mode, env);
    ASSERT_EQ(d.exit_code, stop_at > 0 ? 143 : 0) << "np " << np << ": " << d.err;
    if (stop_at > 0) {
      EXPECT_EQ(final_state(out).step, stop_at);
    }
  }
  std::string what = "elastic";
  for (const auto& [np, stop_at] : stages) what += " " + std::to_string(np);
  expect_same_run(out, ref, what, tensor_tolerance(mode));
}

}  // namespace

// 8-bit AdamW, full fine-tuning (the 32000 x 32 embedding and lm_head have 8-bit moments, the
// small layer matrices float32 ones): every world size and ZeRO stage, and elastic resume, give the
// one-process run (shard boundaries on block boundaries: the blocks are the same on any ranks).
TEST(DistributedTrain, Adamw8bitAtOneToFourRanksEqualsOneProcess) {
  expect_equivalent_at_every_world_size(" learning_rate=0.002 optimizer=adamw_8bit");
}

TEST(DistributedTrain, ElasticResumeWithAdamw8bit) {
  expect_elastic({{2, 3}, {3, 5}, {1, 0}}, " learning_rate=0.002 optimizer=adamw_8bit", 1);
}

TEST(DistributedTrain, ElasticResumeTwoThenThreeThenOneRanks) {
  expect_elastic({{2, 3}, {3, 5}, {1, 0}}, kLora, 1);
}

TEST(DistributedTrain, ElasticResumeWithEmbeddingAndOutputAdapters) {
  // LoRA on embed_tokens and lm_head beside q_proj, ZeRO-1: two ranks stop at step 4, one finishes.
  expect_elastic({{2, 4}, {1, 0}},
                 " lora_config.r=4 lora_config.lora_alpha=8 lora_config.target_modules=[q_proj,embed_tokens,lm_head]"
                 " lora_config.lora_dropout=0",
                 1);
}

TEST(DistributedTrain, ElasticResumeFourThenOneRanks) {
  expect_elastic({{4, 4}, {1, 0}}, " learning_rate=0.002", 1);
}

TEST(DistributedTrain, EverySampleExactlyOncePerEpoch) {
  DistWorkspace w;
  // Packing on, context 64, global batch 4: a seed whose two epochs pack into different numbers
  // of sequences (so of steps), which the step arithmetic must follow.
  const std::string opts = kLora + std::string(" packing=true global_batch_size=4 train_batch_size_per_device=1 num_epochs=2");
  ASSERT_EQ(run_ringtune("prepare " + w.cfg() + " output_dir=" + w.dir.file("prep") + opts).exit_code, 0);
  const auto data = PreparedDataset::load(prepared_dataset_path(w.dir.file("prep"), "train"));
  int seed = -1;
  size_t expected_steps = 0;
  for (int s = 1; s < 200 && seed < 0; ++s) {
    const size_t n0 = pack_sequences(data, sample_order(data.size(), s, 0), 64, true, 0).size();
    const size_t n1 = pack_sequences(data, sample_order(data.size(), s, 1), 64, true, 0).size();
    if (n0 != n1 && (n0 + 3) / 4 != (n1 + 3) / 4) {
      seed = s;
      expected_steps = (n0 + 3) / 4 + (n1 + 3) / 4;
    }
  }
  ASSERT_GT(seed, 0) << "no seed gives epochs of different sizes";
  for (int np = 1; np <= 4; ++np) {
    TempDir logs("ringtune-samples");
    const std::string out = w.dir.file("cover" + std::to_string(np));
    auto d = run_ringtune_mpi(np, "train " + w.cfg() + " output_dir=" + out + opts + " seed=" + std::to_string(seed),
                              "RINGTUNE_TEST_SAMPLE_LOG=" + logs.path());
    ASSERT_EQ(d.exit_code, 0) << "np " << np << ": " << d.err;
    std::map<int64_t, std::multiset<int64_t>> seen;  // epoch -> sample indices
    std::set<int> ranks_with_work;
    for (int r = 0; r < np; ++r) {
      std::istringstream in(read_file(logs.file("samples.rank" + std::to_string(r))));
      int64_t epoch, step, idx;
      while (in >> epoch >> step >> idx) {
        seen[epoch].insert(idx);
        ranks_with_work.insert(r);
      }
    }
    ASSERT_EQ(seen.size(), 2u) << "np " << np;
    for (const auto& [epoch, idx] : seen) {
      EXPECT_EQ(idx.size(), 43u) << "np " << np << " epoch " << epoch;
      for (int64_t i = 0; i < 43; ++i) EXPECT_EQ(idx.count(i), 1u) << "np " << np << " epoch " << epoch << " sample " << i;
    }
    EXPECT_EQ(static_cast<int>(ranks_with_work.size()), np);
    // Every step has work: no empty optimizer step where the epochs' sizes differ.
    std::istringstream in(read_file(out + "/metrics.jsonl"));
    std::string line;
    size_t steps = 0;
    while (std::getline(in, line)) {
      ++steps;
      EXPECT_GT(nlohmann::json::parse(line)["supervised_tokens"].get<int64_t>(), 0) << line;
    }
    EXPECT_EQ(steps, expected_steps) << "np " << np;
  }
}

// ---------------------------------------------------------------------------------------------
// Failures

namespace {

// A failed rank must take the others down instead of leaving them waiting in a collective forever.
// The runs take a few seconds (about 3 s here, printed); the bound only tells a hang (which would
// last until ctest's timeout) from an ending, with a margin no loaded machine comes near.
constexpr double kNoHangSeconds = 120;

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(DistributedFaults, KilledRankEndsEveryRankAndTheRunResumes) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref"), out = w.dir.file("out");
  ASSERT_EQ(run_ringtune("train " + w.cfg() + " output_dir=" + ref + kLora).exit_code, 0);
  RunResult d;
  const double secs = seconds_of([&] {
    d = run_ringtune_mpi(3, "train " + w.cfg() + " output_dir=" + out + kLora + " checkpoint_every_n_steps=2",
                         "RINGTUNE_TEST_FAULT=kill:1:5");
  });
  EXPECT_NE(d.exit_code, 0);
  EXPECT_LT(secs, kNoHangSeconds);
  std::cout << "[ kill -9 rank 1 of 3 at step 5 ] every rank ended in " << secs << " s, exit " << d.exit_code << "\n";
  EXPECT_EQ(final_state(out).step, 4);
  auto again = run_ringtune_mpi(3, "train " + w.cfg() + " output_dir=" + out + kLora + " checkpoint_every_n_steps=2");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  expect_same_run(out, ref, "resumed after kill -9");
}

TEST(DistributedFaults, ThrowingRankEndsEveryRank) {
  DistWorkspace w;
  RunResult d;
  const double secs = seconds_of([&] {
    d = run_ringtune_mpi(2, "train " + w.cfg() + " output_dir=" + w.dir.file("out") + kLora,
                         "RINGTUNE_TEST_FAULT=throw:1:3");
  });
  EXPECT_NE(d.exit_code, 0);
  EXPECT_LT(secs, kNoHangSeconds);
  std::cout << "[ rank 1 of 2 throws at step 3 ] every rank ended in " << secs << " s, exit " << d.exit_code << "\n";
  EXPECT_NE(d.err.find("rank 1: RINGTUNE_TEST_FAULT: rank 1 fails at step 3"), std::string::npos) << d.err;
}

TEST(DistributedFaults, SigtermToEveryRankWritesOneCheckpointAndExits143) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref"), out = w.dir.file("out");
  ASSERT_EQ(run_ringtune("train " + w.cfg() + " output_dir=" + ref + kLora + " max_steps=40").exit_code, 0);
  // As Slurm does before a time limit: SIGTERM to every rank (not to mpirun), mid-run. The ranks
  // are the children of the mpirun this test started (by its pid, never by name).
  const std::string run = "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                          "mpirun --oversubscribe --bind-to none -np 2 " + ringtune_binary() + " train " + w.cfg() +
                          " output_dir=" + out + kLora + " max_steps=40 checkpoint_every_n_steps=1000";
  const std::string script =
      run + " & pid=$!; for i in $(seq 1 600); do "
      "[ -f " + out + "/metrics.jsonl ] && [ $(wc -l < " + out + "/metrics.jsonl) -ge 3 ] && break; sleep 0.05; done; "
      "kill -TERM $(ps -o pid= --ppid $pid); wait $pid; echo exit=$?";
  auto d = run_shell(script);
  EXPECT_NE(d.out.find("exit=143"), std::string::npos) << d.out << d.err;
  const auto st = final_state(out);
  EXPECT_GE(st.step, 3);
  EXPECT_LT(st.step, 40);
  EXPECT_EQ(fs::exists(out + "/adapter"), false);
  std::cout << "[ SIGTERM ] checkpoint at step " << st.step << " of 40\n";
  auto again = run_ringtune_mpi(2, "train " + w.cfg() + " output_dir=" + out + kLora + " max_steps=40 checkpoint_every_n_steps=1000");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  expect_same_run(out, ref, "resumed after SIGTERM");
}

TEST(DistributedFaults, RanksWithDifferentConfigurationsAreRefused) {
  DistWorkspace w;
  const std::string common = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun "
                             "--oversubscribe --bind-to none ";
  const std::string train = ringtune_binary() + " train " + w.cfg() + " output_dir=" + w.dir.file("out") + kLora;
  auto d = run_shell("env " + common + "-np 1 " + train + " learning_rate=0.01 : -np 1 " + train + " learning_rate=0.02");
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("ranks started differently from rank 0: rank 1 (config)"), std::string::npos) << d.err;
  EXPECT_FALSE(fs::exists(w.dir.file("out/metrics.jsonl")));
}

// The collective watchdog (distributed/watchdog.h). A rank that stops (SIGSTOP: every thread,
// its heartbeats too, as a host cut off by a partition) or hangs (its watchdog thread reports but
// it makes no progress) leaves the others waiting in the gradient all-reduce; with
// distributed.timeout_s 3 they abort the job within the timeout plus a few seconds, naming the
// collective and the peer, and the run resumes from its last checkpoint. A rank that is slow but
// working (every checkpoint tensor takes 100 ms, a checkpoint ~8 s, timeout 1 s) trips nothing.
namespace {

void expect_watchdog_trips(const std::string& fault, const std::string& about_peer) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref"), out = w.dir.file("out");
  ASSERT_EQ(run_ringtune("train " + w.cfg() + " output_dir=" + ref + kLora).exit_code, 0);
  RunResult d;
  const std::string args = "train " + w.cfg() + " output_dir=" + out + kLora + " checkpoint_every_n_steps=2";
  const double secs = seconds_of([&] {
    d = run_ringtune_mpi(3, args + " distributed.timeout_s=3", "RINGTUNE_TEST_FAULT=" + fault + ":1:5");
  });
  EXPECT_NE(d.exit_code, 0) << d.err;
  // Start-up and four steps take ~3 s here; the stall begins at step 5.
  EXPECT_LT(secs, 3 + 10 + 10) << d.err;
  for (int r : {0, 2}) {
    const std::string line = "watchdog: rank " + std::to_string(r) + " (host ";
    const size_t at = d.err.find(line);
    if (at == std::string::npos) continue;  // MPI_Abort of the first rank may end the other first
    const std::string msg = d.err.substr(at, d.err.find('\n', at) - at);
    EXPECT_NE(msg.find("in all_reduce ("), std::string::npos) << msg;
    EXPECT_NE(msg.find("at step 5"), std::string::npos) << msg;
    EXPECT_NE(msg.find(about_peer), std::string::npos) << msg;
    EXPECT_NE(msg.find("distributed.timeout_s 3.0"), std::string::npos) << msg;
  }
  EXPECT_NE(d.err.find("watchdog: rank "), std::string::npos) << d.err;
  std::cout << "[ rank 1 of 3: " << fault << " at step 5, timeout 3 s ] every rank ended in " << secs << " s\n";
  EXPECT_EQ(final_state(out).step, 4);
  auto again = run_ringtune_mpi(3, args);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  expect_same_run(out, ref, "resumed after the watchdog");
}

}  // namespace

TEST(DistributedWatchdog, StoppedRankIsDetectedAndTheRunResumes) {
  expect_watchdog_trips("stop", "not heard from rank 1 (host ");
}

TEST(DistributedWatchdog, HungRankIsDetected) {
  expect_watchdog_trips("hang", "rank 1 (host ");
}

TEST(DistributedWatchdog, SlowCheckpointWritesDoNotTripIt) {
  DistWorkspace w;
  const std::string ref = w.dir.file("ref"), out = w.dir.file("out");
  ASSERT_EQ(run_ringtune("train " + w.cfg() + " output_dir=" + ref + kLora).exit_code, 0);
  RunResult d;
  const double secs = seconds_of([&] {
    d = run_ringtune_mpi(2, "train " + w.cfg() + " output_dir=" + out + kLora +
                                " distributed.timeout_s=1 checkpoint_every_n_steps=4",
                         "RINGTUNE_TEST_SLOW_CHECKPOINT_MS=100");
  });
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(d.err.find("watchdog: rank"), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("watchdog: timeout 1.0 s, heartbeat every 0.1 s over UDP"), std::string::npos) << d.err;
  // Three checkpoints (steps 4, 8, 9) of 84 tensors at 100 ms each: rank 1 waited ~8 s per
  // checkpoint in the barrier after it, eight times its timeout.
  EXPECT_GT(secs, 3 * 84 * 0.1);
  std::cout << "[ checkpoints of ~8.4 s, timeout 1 s ] run finished in " << secs << " s\n";
  expect_same_run(out, ref, "slow checkpoints");
}
