// `ringtune train` end to end on a tiny random model with Llama 2's tokenizer: LoRA and full
// fine-tuning reduce the loss, metrics.jsonl has every field, the exports have PEFT's / Hugging
// Face's layout, bad configs are refused before training, and the first five step losses of a
// fixed-seed run are recorded (a regression test).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>

#include "model/llama.h"
#include "model/lora.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include "src/io/checkpoint.h"
#include <torch/torch.h>
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

struct TrainWorkspace {
  TempDir dir{"ringtune-train"};
  TrainWorkspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    const std::string lines = weather_chats(48);
    write_file(dir.file("train.jsonl"), lines);
    write_file(dir.file("valid.jsonl"), lines.substr(0, lines.find('\n') + 1));
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\nvalid_path: valid.jsonl\n"
               "output_dir: out\ndtype: float32\ncontext_length: 128\ngeneration_config:\n  prompt_format: llama2\n"
               "learning_rate: 0.01\nlr_scheduler_type: constant\nglobal_batch_size: 4\n"
               "train_batch_size_per_device: 2\nmax_steps: 12\nseed: 5\ngradient_checkpointing: false\n");
  }
  std::vector<nlohmann::json> metrics() const {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_file(dir.file("out/metrics.jsonl")));
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }
};

}  // namespace

TEST(Train, LoraReducesLossAndExportsPeftAdapter) {
  TrainWorkspace w;
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " lora_config.r=8 lora_config.lora_alpha=16 "
                        "lora_config.target_modules=all-linear lora_config.lora_dropout=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = w.metrics();
  ASSERT_EQ(m.size(), 12u);
  for (const char* k : {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "supervised_tokens", "elapsed_s"})
    EXPECT_TRUE(m[0].contains(k)) << k;
  EXPECT_TRUE(m.back().contains("valid_loss"));
  EXPECT_LT(m.back()["loss"].get<double>(), 0.95 * m.front()["loss"].get<double>())
      << m.front()["loss"] << " -> " << m.back()["loss"];
  auto cfg = nlohmann::json::parse(read_file(w.dir.file("out/adapter/adapter_config.json")));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 8);
  EXPECT_EQ(cfg["lora_alpha"], 16.0);
  EXPECT_EQ(cfg["use_rslora"], false);
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  SafeTensorsFile a(w.dir.file("out/adapter/adapter_model.safetensors"));
  EXPECT_EQ(a.tensors().size(), 2u * 2 * 7);  // A and B, 2 layers, 7 modules
  EXPECT_EQ(a.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape, (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(a.info("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape, (std::vector<int64_t>{32, 8}));
}

TEST(Train, FullFineTuningExportsAModelThatLoads) {
  TrainWorkspace w;
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=6 learning_rate=0.003");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = w.metrics();
  ASSERT_EQ(m.size(), 6u);
  EXPECT_LT(m.back()["loss"].get<double>(), m.front()["loss"].get<double>());
  auto g = run_ringtune("generate --model " + w.dir.file("out/model") + " --prompt 'Weather in Oslo?' --max-new-tokens 2");
  EXPECT_EQ(g.exit_code, 0) << g.err;
  EXPECT_TRUE(fs::exists(w.dir.file("out/model/tokenizer.model")));
}

TEST(Train, RecordedFirstFiveStepLosses) {
  // Recorded from this configuration (seed 5, one thread, float32); a change in data order,
  // packing, loss normalisation, LoRA initialisation or AdamW shows up here.
  TrainWorkspace w;
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=5 lora_config.r=4 lora_config.lora_dropout=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = w.metrics();
  ASSERT_EQ(m.size(), 5u);
  const std::vector<double> recorded = {10.4535191, 10.3510801, 10.3036532, 10.2326125, 10.1899333};
  std::ostringstream got;
  for (const auto& x : m) got << std::setprecision(9) << x["loss"].get<double>() << ", ";
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(m[i]["loss"].get<double>(), recorded[i], 1e-5) << "got: " << got.str();
}

TEST(Train, BadConfigsAreRefusedBeforeTraining) {
  TrainWorkspace w;
  struct Case {
    std::string overrides, expected;
  };
  const std::vector<Case> cases = {
      {"lora_config.r=8 lora_config.target_modules=[q_proj,qkv_proj]", "qkv_proj"},
      {"learning_rate=0", "learning_rate"},
      {"learning_rate=-1", "learning_rate"},
      {"context_length=4096", "context_length: 4096 exceeds the model's max_position_embeddings 512"},
      {"train_path=missing.jsonl", "missing.jsonl"},
      {"initial_base_model_ckpt_path=/nonexistent", "/nonexistent"},
      {"lora_config.r=0", "lora_config.r"},
      {"lora_config.r=8 lora_config.lora_dropout=1.5", "lora_dropout"},
      {"max_steps=abc", "expected int"},
      {"lr_scheduler_type=cosine_with_restarts", "lr_scheduler_type"},
      {"lora_config.lora_alpha=8", "lora_config"},
      {"max_steps=null num_epochs=0", "num_epochs"},
      {"train_batch_size_per_device=0", "train_batch_size_per_device"},
      {"tokenizer_path=" + fixtures_dir() + "/tokenizers/llama3-hf", "more than the model's vocab_size 32000"},
      {"generation_config.prompt_format=alpaca", "prompt_format"},
      {"dtype=float64", "dtype"},
  };
  for (const auto& c : cases) {
    auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " " + c.overrides);
    EXPECT_EQ(r.exit_code, 2) << c.overrides << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << c.overrides << "\n" << r.err;
    EXPECT_FALSE(fs::exists(w.dir.file("out/metrics.jsonl"))) << c.overrides;
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and resume

namespace {

// Runs `train` with one environment variable set for the child (fault injection hooks).
RunResult train_with_env(const TrainWorkspace& w, const std::string& overrides, const std::string& var = "",
                         const std::string& value = "") {
  if (!var.empty()) setenv(var.c_str(), value.c_str(), 1);
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " " + overrides);
  if (!var.empty()) unsetenv(var.c_str());
  return r;
}

std::vector<double> losses(const TrainWorkspace& w) {
  std::vector<double> out;
  for (const auto& m : w.metrics()) out.push_back(m["loss"].get<double>());
  return out;
}

const char* kResumeRun = "max_steps=8 checkpoint_every_n_steps=3 num_checkpoints_to_keep=0 "
                         "lora_config.r=4 lora_config.lora_dropout=0.1";

struct Reference {
  std::vector<double> losses;
  std::string adapter;
};

const Reference& uninterrupted() {
  static const Reference ref = [] {
    TrainWorkspace w;
    auto r = train_with_env(w, kResumeRun);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Reference{losses(w), read_file(w.dir.file("out/adapter/adapter_model.safetensors"))};
  }();
  return ref;
}

}  // namespace

TEST(Resume, KillNineBetweenCheckpointsThenResumeIsBitwiseIdentical) {
  const auto& ref = uninterrupted();
  ASSERT_EQ(ref.losses.size(), 8u);
  TrainWorkspace w;
  auto killed = train_with_env(w, kResumeRun, "RINGTUNE_TEST_KILL_AT_STEP", "5");
  EXPECT_EQ(killed.exit_code, 137) << killed.err;
  EXPECT_EQ(losses(w).size(), 5u);  // steps 4 and 5 ran after the step-3 checkpoint
  auto resumed = train_with_env(w, kResumeRun);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from"), std::string::npos);
  EXPECT_NE(resumed.err.find("step-00000003.h5 at step 3"), std::string::npos) << resumed.err;
  EXPECT_EQ(losses(w), ref.losses);  // bitwise: doubles compared exactly
  EXPECT_EQ(read_file(w.dir.file("out/adapter/adapter_model.safetensors")), ref.adapter);
}

TEST(Resume, SigtermWritesACheckpointExits143AndResumesBitwise) {
  const auto& ref = uninterrupted();
  TrainWorkspace w;
  auto stopped = train_with_env(w, kResumeRun, "RINGTUNE_TEST_TERM_AT_STEP", "4");
  EXPECT_EQ(stopped.exit_code, 143) << stopped.err;
  EXPECT_TRUE(fs::exists(w.dir.file("out/checkpoints/step-00000004.h5")));
  EXPECT_EQ(read_file(w.dir.file("out/checkpoints/latest")), "step-00000004.h5\n");
  auto info = run_ringtune("inspect " + w.dir.file("out/checkpoints/step-00000004.h5"));
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("step 4 of 8, epoch "), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("model.layers.1.self_attn.v_proj.lora_B.weight  [16, 4]"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("  lora_config:"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(", AdamW step 4\n"), std::string::npos) << info.out;
  auto resumed = train_with_env(w, kResumeRun);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(losses(w), ref.losses);
  EXPECT_EQ(read_file(w.dir.file("out/adapter/adapter_model.safetensors")), ref.adapter);
}

TEST(Resume, KillDuringCheckpointWriteLeavesALoadableLatest) {
  const auto& ref = uninterrupted();
  TrainWorkspace w;
  auto killed = train_with_env(w, kResumeRun, "RINGTUNE_TEST_KILL_IN_CHECKPOINT", "6");
  EXPECT_EQ(killed.exit_code, 137) << killed.err;
  EXPECT_TRUE(fs::exists(w.dir.file("out/checkpoints/step-00000006.h5.tmp")));
  EXPECT_FALSE(fs::exists(w.dir.file("out/checkpoints/step-00000006.h5")));
  EXPECT_EQ(read_file(w.dir.file("out/checkpoints/latest")), "step-00000003.h5\n");
  auto resumed = train_with_env(w, kResumeRun);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(losses(w), ref.losses);
}

TEST(Resume, CorruptedLatestIsDetectedAndThePreviousOneUsed) {
  const auto& ref = uninterrupted();
  TrainWorkspace w;
  auto killed = train_with_env(w, kResumeRun, "RINGTUNE_TEST_KILL_AT_STEP", "7");
  ASSERT_EQ(killed.exit_code, 137) << killed.err;
  const std::string latest = w.dir.file("out/checkpoints/step-00000006.h5");
  ASSERT_TRUE(fs::exists(latest));
  // Flip one byte inside the stored data of a trainable tensor: only its checksum can tell.
  const auto st = load_checkpoint(latest);
  auto t = st.trainable.back().second.contiguous();
  const std::string needle(static_cast<const char*>(t.data_ptr()), t.nbytes());
  std::string raw = read_file(latest);
  const auto at = raw.find(needle);
  ASSERT_NE(at, std::string::npos);
  raw[at + needle.size() / 2] = static_cast<char>(raw[at + needle.size() / 2] ^ 0x01);
  write_file(latest, raw);
  auto resumed = train_with_env(w, kResumeRun);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("checkpoint " + latest + " cannot be used"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("step-00000003.h5 at step 3"), std::string::npos) << resumed.err;
  EXPECT_EQ(losses(w), ref.losses);
}

TEST(Resume, IncompatibleChangesAreRefusedSayingWhatDiffers) {
  TrainWorkspace w;
  auto first = train_with_env(w, "max_steps=3 checkpoint_every_n_steps=1 lora_config.r=4");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto rank = train_with_env(w, "max_steps=6 lora_config.r=8");
  EXPECT_EQ(rank.exit_code, 2);
  EXPECT_NE(rank.err.find("has shape [8, 32] in the checkpoint") == std::string::npos &&
                    rank.err.find("has shape [4, 32] in the checkpoint, [8, 32] now (other LoRA rank?)") == std::string::npos
                ? std::string::npos
                : 0,
            std::string::npos)
      << rank.err;
  auto full = train_with_env(w, "max_steps=6");
  EXPECT_EQ(full.exit_code, 2);
  EXPECT_NE(full.err.find("LoRA vs full fine-tuning?"), std::string::npos) << full.err;
  write_tiny_llama(w.dir.file("base"), 32000, 32, 2, 99);  // other base weights
  auto base = train_with_env(w, "max_steps=6 lora_config.r=4");
  EXPECT_EQ(base.exit_code, 2);
  EXPECT_NE(base.err.find("cannot resume: the base weights differ"), std::string::npos) << base.err;
  // export and generate refuse the checkpoint on other base weights too (export merged it silently).
  for (const std::string cmd : {"export --checkpoint " + w.dir.file("out") + " --format merged --output " + w.dir.file("m"),
                                "generate --model " + w.dir.file("base") + " --adapter " + w.dir.file("out") +
                                    " --prompt-ids 1,2 --max-new-tokens 2"}) {
    auto other_base = run_ringtune(cmd);
    EXPECT_EQ(other_base.exit_code, 2) << other_base.err;
    EXPECT_NE(other_base.err.find("trained on other base weights than "), std::string::npos) << other_base.err;
  }
  EXPECT_FALSE(fs::exists(w.dir.file("m")));
  // Each was refused before the data was looked at (the cache's "prepared data ... is up to date").
  for (const auto* refused : {&rank, &full, &base})
    EXPECT_EQ(refused->err.find("prepared data"), std::string::npos) << refused->err;
  auto fresh = train_with_env(w, "max_steps=2 lora_config.r=4 resume=none");
  EXPECT_EQ(fresh.exit_code, 0) << fresh.err;
}

// Resuming with other settings than the checkpoint's run: another global batch (the sample
// positions are step x batch) or another adapter scale is refused naming the key; other changes
// (learning rate, seed, data) are named in one warning; the same settings say nothing. Before,
// all of these resumed without a word.
TEST(Resume, ChangedSettingsAreNamedAndABatchOrScaleChangeIsRefused) {
  TrainWorkspace w;
  auto first = train_with_env(w, "max_steps=4 checkpoint_every_n_steps=2 num_checkpoints_to_keep=0 lora_config.r=4");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string from = " resume=" + w.dir.file("out/checkpoints/step-00000002.h5") + " output_dir=" + w.dir.file("again");
  const std::string run = "max_steps=4 lora_config.r=4" + from;
  auto same = train_with_env(w, run);
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.err.find("differ"), std::string::npos) << same.err;
  fs::remove_all(w.dir.file("again"));
  auto batch = train_with_env(w, run + " global_batch_size=2");
  EXPECT_EQ(batch.exit_code, 2) << batch.err;
  EXPECT_NE(batch.err.find("cannot resume: its run took 4 sequences a step, this one 2 (1 rank(s)); set "
                           "global_batch_size: 4 to continue it"),
            std::string::npos)
      << batch.err;
  auto scale = train_with_env(w, run + " lora_config.lora_alpha=64");
  EXPECT_EQ(scale.exit_code, 2) << scale.err;
  EXPECT_NE(scale.err.find("cannot resume: its adapter was trained with lora_config.lora_alpha 16.0, this run sets "
                           "64.0 (the adapter's scale would change)"),
            std::string::npos)
      << scale.err;
  const std::string lines = read_file(w.dir.file("train.jsonl"));
  write_file(w.dir.file("other.jsonl"), lines.substr(lines.find('\n') + 1));
  auto other = train_with_env(w, run + " learning_rate=0.001 seed=7 train_path=" + w.dir.file("other.jsonl"));
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_NE(other.err.find("with settings that differ from its run: train_path " + w.dir.file("train.jsonl") + " -> " +
                           w.dir.file("other.jsonl") + ", learning_rate 0.01 -> 0.001, seed 5 -> 7; the steps from 2 "
                           "on follow the new ones"),
            std::string::npos)
      << other.err;
  EXPECT_NE(other.err.find("the training data differs from its run's (fingerprint "), std::string::npos) << other.err;
  fs::remove_all(w.dir.file("again"));
  // A checkpoint past the run's end is refused (it "resumed at step 4 of 2" and exported step 4's adapter).
  auto past = train_with_env(w, "max_steps=2 lora_config.r=4 resume=" + w.dir.file("out/checkpoints/step-00000004.h5") +
                                    " output_dir=" + w.dir.file("again"));
  EXPECT_EQ(past.exit_code, 2) << past.err;
  EXPECT_NE(past.err.find("cannot resume: it is at step 4, past the 2 steps of this run"), std::string::npos) << past.err;
}

// A run that starts over (resume: none) or from an earlier checkpoint in an output_dir that holds
// a longer run's checkpoints: at its first checkpoint it removes the earlier run's later ones,
// which would otherwise rank as "newest". Before, pruning removed the new run's checkpoint and
// kept the old run's step 4, so `export --checkpoint out` and a resumed run took the old run.
TEST(Resume, StartingOverRemovesTheEarlierRunsLaterCheckpoints) {
  TrainWorkspace w;
  const std::string ckpts = w.dir.file("out/checkpoints/");
  auto first = train_with_env(w, "max_steps=4 checkpoint_every_n_steps=1 num_checkpoints_to_keep=0 lora_config.r=4");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(list_checkpoints(w.dir.file("out")).size(), 4u);
  // From step 2 of that run: step 3 is written again and the old step 4 goes.
  auto rewind = train_with_env(w, "max_steps=3 checkpoint_every_n_steps=1 num_checkpoints_to_keep=0 lora_config.r=4 "
                                  "resume=" + ckpts + "step-00000002.h5");
  ASSERT_EQ(rewind.exit_code, 0) << rewind.err;
  EXPECT_NE(rewind.err.find("removed 1 checkpoint(s) of an earlier run past step 2 (step-00000004.h5): this run "
                            "continued from " + ckpts + "step-00000002.h5"),
            std::string::npos)
      << rewind.err;
  EXPECT_EQ(list_checkpoints(w.dir.file("out")),
            (std::vector<std::string>{ckpts + "step-00000003.h5", ckpts + "step-00000002.h5", ckpts + "step-00000001.h5"}));
  // Start over with the default num_checkpoints_to_keep (2): only this run's two checkpoints stay.
  auto fresh = train_with_env(w, "max_steps=2 checkpoint_every_n_steps=1 lora_config.r=4 resume=none");
  ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_NE(fresh.err.find("removed 2 checkpoint(s) of an earlier run past step 0 (step-00000003.h5, "
                           "step-00000002.h5): this run started afresh"),
            std::string::npos)
      << fresh.err;
  EXPECT_EQ(list_checkpoints(w.dir.file("out")),
            (std::vector<std::string>{ckpts + "step-00000002.h5", ckpts + "step-00000001.h5"}));
  CheckpointState st;
  EXPECT_EQ(find_resume_checkpoint(w.dir.file("out"), st), ckpts + "step-00000002.h5");
  EXPECT_EQ(st.total_steps, 2);
  auto e = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format peft --output " + w.dir.file("peft"));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.err.find("(step 2)"), std::string::npos) << e.err;
}

// ---------------------------------------------------------------------------------------------
// Export

TEST(Export, MergedExportReloadsToBasePlusAdapterLogits) {
  TrainWorkspace w;
  auto r = train_with_env(w, "max_steps=4 lora_config.r=4 lora_config.target_modules=all-linear lora_config.lora_dropout=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string merged = w.dir.file("merged");
  auto e = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format merged --output " + merged +
                        " --shard-size-mb 1");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_TRUE(fs::exists(merged + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(merged + "/model-00001-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(merged + "/tokenizer.model"));

  // Reference: the base model with the checkpoint's adapters, unmerged.
  auto st = load_checkpoint(list_checkpoints(w.dir.file("out")).front());
  auto model = load_hf_model(w.dir.file("base"));
  LoraOptions lo;
  lo.r = 4;
  lo.lora_alpha = 16;
  lo.lora_dropout = 0;
  lo.target_modules = {"all-linear"};
  apply_lora(model, lo);
  auto params = model->named_parameters();
  torch::NoGradGuard ng;
  for (const auto& [name, t] : st.trainable) params[name].copy_(t);
  model->eval();
  auto reloaded = load_hf_model(merged);
  auto tokens = torch::randint(3, 32000, {2, 20});
  const double diff = (reloaded->forward(tokens) - model->forward(tokens)).abs().max().item<double>();
  std::cout << "[ export ] merged vs base+adapter max |logit diff| " << diff << "\n";
  EXPECT_LT(diff, 1e-4);
  // The adapter moved the model: merged differs from the base.
  auto base = load_hf_model(w.dir.file("base"));
  EXPECT_GT((base->forward(tokens) - model->forward(tokens)).abs().max().item<double>(), 1e-3);

  auto peft = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format peft --output " + w.dir.file("peft"));
  ASSERT_EQ(peft.exit_code, 0) << peft.err;
  SafeTensorsFile a(w.dir.file("peft/adapter_model.safetensors")), b(w.dir.file("out/adapter/adapter_model.safetensors"));
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const auto& [name, info] : b.tensors()) EXPECT_TRUE(torch::equal(a.load(name), b.load(name))) << name;
  EXPECT_EQ(read_file(w.dir.file("peft/adapter_config.json")), read_file(w.dir.file("out/adapter/adapter_config.json")));

  auto again = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format peft --output " + w.dir.file("peft"));
  EXPECT_EQ(again.exit_code, 2);  // not empty
  auto full = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=2 output_dir=" + w.dir.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto bad = run_ringtune("export --checkpoint " + w.dir.file("full") + " --format peft --output " + w.dir.file("x"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("has no adapter; use --format merged"), std::string::npos) << bad.err;
}

// ---------------------------------------------------------------------------------------------
// Continuing an adapter (initial_adapter_model_ckpt_path)

TEST(Train, InitialAdapterContinuesFromTheExportedAdapter) {
  TrainWorkspace w;
  const std::string lora = " lora_config.r=4 lora_config.lora_alpha=8 lora_config.target_modules=all-linear lora_config.lora_dropout=0";
  auto a = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=6" + lora);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // One global batch holds every sequence: the first step's loss (before its update) is the adapter's loss
  // over the whole training file, which `eval` computes independently from the same adapter.
  const std::string one_step = " output_dir=" + w.dir.file("b") + " global_batch_size=64 max_steps=1";
  const std::string newest = list_checkpoints(w.dir.file("out")).at(0);
  for (const std::string& from : std::vector<std::string>{"out/adapter", newest.substr(w.dir.path().size() + 1), "out"}) {
    SCOPED_TRACE(from);
    fs::remove_all(w.dir.file("b"));
    auto b = run_ringtune("train " + w.dir.file("cfg.yaml") + one_step + " initial_adapter_model_ckpt_path=" +
                          w.dir.file(from) + (from == "out" ? "" : lora));
    ASSERT_EQ(b.exit_code, 0) << b.err;
    std::istringstream in(read_file(w.dir.file("b/metrics.jsonl")));
    const double continued = nlohmann::json::parse(in)["loss"].get<double>();
    auto e = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --checkpoint " + w.dir.file("out/adapter") +
                          " --output " + w.dir.file("eval.json") + " valid_path=" + w.dir.file("train.jsonl"));
    ASSERT_EQ(e.exit_code, 0) << e.err;
    const double evaluated = nlohmann::json::parse(read_file(w.dir.file("eval.json")))["valid_loss"].get<double>();
    EXPECT_NEAR(continued, evaluated, 1e-5 * evaluated);
    EXPECT_LT(continued, 10.3);  // the untrained adapter's loss is about 10.45
  }
  // A lora_config that contradicts the adapter is refused, naming the key.
  auto bad = run_ringtune("train " + w.dir.file("cfg.yaml") + one_step + " initial_adapter_model_ckpt_path=" +
                          w.dir.file("out/adapter") + " lora_config.r=8 lora_config.target_modules=all-linear");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("lora_config.r: 8 does not match the initial adapter's 4"), std::string::npos) << bad.err;
  auto missing = run_ringtune("train " + w.dir.file("cfg.yaml") + one_step + " initial_adapter_model_ckpt_path=" +
                              w.dir.file("nowhere"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("initial_adapter_model_ckpt_path"), std::string::npos) << missing.err;
}

// ---------------------------------------------------------------------------------------------
// QLoRA (quantization: nf4)

TEST(Train, QloraTrainsResumesOnlyWithTheSameQuantizationAndMergesIntoTheUnquantizedBase) {
  TrainWorkspace w;
  const std::string lora = " lora_config.r=8 lora_config.target_modules=all-linear lora_config.lora_dropout=0";
  auto r = train_with_env(w, "quantization=nf4 checkpoint_every_n_steps=6" + lora);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // every projection of both layers is NF4: 7 per layer, 32x32 or 32x(intermediate) weights
  EXPECT_NE(r.err.find("QLoRA: decoder projections in NF4"), std::string::npos) << r.err;
  auto m = w.metrics();
  ASSERT_EQ(m.size(), 12u);
  EXPECT_LT(m.back()["loss"].get<double>(), 0.95 * m.front()["loss"].get<double>());
  const auto ckpts = list_checkpoints(w.dir.file("out"));
  ASSERT_FALSE(ckpts.empty());
  const auto st = load_checkpoint(ckpts.front());
  EXPECT_EQ(st.trainable.size(), 2u * 2 * 7);  // only the adapters: A and B, 2 layers, 7 projections
  for (const auto& [name, t] : st.trainable) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
  EXPECT_NE(st.base_hash.find("+nf4"), std::string::npos) << st.base_hash;

  // the same run on the unquantized base starts from the same adapters but another loss
  auto plain = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=1 output_dir=" + w.dir.file("plain") + lora);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto first_plain = nlohmann::json::parse(read_file(w.dir.file("plain/metrics.jsonl")).substr(0, read_file(w.dir.file("plain/metrics.jsonl")).find('\n')));
  EXPECT_NE(first_plain["loss"].get<double>(), m.front()["loss"].get<double>());
  EXPECT_NEAR(first_plain["loss"].get<double>(), m.front()["loss"].get<double>(), 0.05 * m.front()["loss"].get<double>());

  auto other = train_with_env(w, "max_steps=14" + lora);  // resume: auto, without quantization
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.err.find("cannot resume: the quantization of the base differs (checkpoint nf4, quantization now none)"),
            std::string::npos)
      << other.err;
  auto more = train_with_env(w, "max_steps=14 load_in_4bit=true" + lora);  // axolotl's spelling
  ASSERT_EQ(more.exit_code, 0) << more.err;
  EXPECT_EQ(w.metrics().size(), 14u);

  const std::string merged = w.dir.file("merged");
  auto e = run_ringtune("export --checkpoint " + w.dir.file("out") + " --format merged --output " + merged);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.err.find("NF4-quantized base into the unquantized base weights"), std::string::npos) << e.err;
  // merged = the full-precision base + scale * B A (not the NF4 base + B A)
  SafeTensorsFile b(w.dir.file("base/model.safetensors")), mm(merged + "/model.safetensors");
  const auto last = load_checkpoint(list_checkpoints(w.dir.file("out")).front());
  std::map<std::string, torch::Tensor> t(last.trainable.begin(), last.trainable.end());
  const std::string up = "model.layers.0.mlp.up_proj";
  const auto delta = 2.0 * torch::matmul(t.at(up + ".lora_B.weight"), t.at(up + ".lora_A.weight"));  // alpha 16 / r 8
  const auto base_up = b.load(up + ".weight"), merged_up = mm.load(up + ".weight");
  EXPECT_GT(delta.abs().max().item<double>(), 1e-4);
  EXPECT_LT((merged_up - (base_up + delta)).abs().max().item<double>(), 1e-6);
}

// 8-bit AdamW (full fine-tuning: the 32000 x 32 embedding, tied to lm_head, gets 8-bit moments):
// killed between checkpoints and resumed, the run is the uninterrupted one bit for bit.
TEST(Resume, Adamw8bitKillNineThenResumeIsBitwiseIdentical) {
  const std::string run = "max_steps=8 checkpoint_every_n_steps=3 num_checkpoints_to_keep=0 optimizer=adamw_8bit";
  TrainWorkspace ref;
  auto r = train_with_env(ref, run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("optimizer: adamw_8bit"), std::string::npos) << r.err;
  TrainWorkspace w;
  auto killed = train_with_env(w, run, "RINGTUNE_TEST_KILL_AT_STEP", "5");
  EXPECT_EQ(killed.exit_code, 137) << killed.err;
  auto resumed = train_with_env(w, run);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("step-00000003.h5 at step 3"), std::string::npos) << resumed.err;
  EXPECT_EQ(losses(w), losses(ref));
  const auto a = load_checkpoint(list_checkpoints(w.dir.file("out")).front());
  const auto b = load_checkpoint(list_checkpoints(ref.dir.file("out")).front());
  ASSERT_EQ(a.optimizer.size(), b.optimizer.size());
  int quantized = 0;
  for (size_t i = 0; i < a.optimizer.size(); ++i) {
    EXPECT_EQ(a.optimizer[i].first, b.optimizer[i].first);
    EXPECT_TRUE(torch::equal(a.optimizer[i].second, b.optimizer[i].second)) << a.optimizer[i].first;
    quantized += a.optimizer[i].first.find(".q8") != std::string::npos;
  }
  EXPECT_EQ(quantized, 2);  // exp_avg and exp_avg_sq codes of embed_tokens (tied to lm_head)
}
