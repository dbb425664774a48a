// Users' llmforge configs: every key of llmforge's fine-tuning config is recognised, honoured with
// llmforge's meaning (padding, num_devices, deepspeed, checkpoint_and_evaluation_frequency,
// min_update_steps, num_checkpoints_to_keep by validation loss, no_gradient_checkpoint, model_id)
// or accepted with exactly one warning that says why; other tasks are refused. The configs here
// are written for these tests in llmforge's layout (no third-party file is committed).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "src/config/registry.h"
#include "src/error.h"
#include "src/io/checkpoint.h"
#include "src/options/compat_options.h"
#include "src/options/model_options.h"
#include "src/options/train_options.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

// An llmforge LoRA config as Anyscale's examples lay it out (paths local), every key of its
// config reference that ringtune accepts.
std::string llmforge_lora_config() {
  return R"(model_id: meta-llama/Meta-Llama-3-8B-Instruct
initial_base_model_ckpt_path: base
train_path: train.jsonl
valid_path: valid.jsonl
context_length: 128
num_devices: 4
num_epochs: 1
train_batch_size_per_device: 2
eval_batch_size_per_device: 2
learning_rate: 1e-2
padding: "longest"
num_checkpoints_to_keep: 1
dataset_size_scaling_factor: 10000
output_dir: out
deepspeed:
  config_path: zero_3.json
dataset_size_scaling_factor: 10000
flash_attention_2: true
trainer_resources:
  memory: 53687091200
worker_resources:
  accelerator_type:A10G: 0.001
  anyscale/accelerator_shape:4xA10G: 0.001
lora_config:
  r: 8
  lora_alpha: 16
  lora_dropout: 0.05
  target_modules:
    - q_proj
    - v_proj
    - k_proj
    - o_proj
    - gate_proj
    - up_proj
    - down_proj
  modules_to_save: []
  bias: "none"
  fan_in_fan_out: false
  init_lora_weights: true
  task_type: "CAUSAL_LM"
liger_kernel:
  enabled: True
  kwargs:
    rms_norm: True
logger:
  provider: wandb
generation_config:
  prompt_format: llama2
  stopping_sequences: ["</s>"]
num_data_blocks_per_device: 16
custom_model_tag: my-model
eval_first: false
max_num_checkpoints: 10
no_gradient_checkpoint: true
)";
}

const std::vector<std::string> kNotUsed = {
    "dataset_size_scaling_factor", "flash_attention_2", "trainer_resources", "worker_resources",
    "liger_kernel", "logger", "generation_config.stopping_sequences", "num_data_blocks_per_device",
    "custom_model_tag", "eval_first", "max_num_checkpoints"};

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

struct Workspace {
  TempDir dir{"ringtune-llmforge"};
  Workspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    const std::string lines = weather_chats(48);
    write_file(dir.file("train.jsonl"), lines);
    write_file(dir.file("valid.jsonl"), weather_chats(3));
    write_file(dir.file("zero_3.json"),
               R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}, "bf16": {"enabled": true}})");
    write_file(dir.file("cfg.yaml"), llmforge_lora_config() + "dtype: float32\nseed: 5\n");
  }
  Config load(const std::vector<std::string>& overrides = {}) const { return load_config(dir.file("cfg.yaml"), overrides); }
  std::string error_of(const std::string& yaml) const {
    write_file(dir.file("bad.yaml"), yaml);
    try {
      load_config(dir.file("bad.yaml"));
    } catch (const InputError& e) {
      return e.what();
    }
    return "(no error)";
  }
  std::vector<nlohmann::json> metrics(const std::string& out = "out") const {
    std::vector<nlohmann::json> v;
    std::istringstream in(read_file(dir.file(out + "/metrics.jsonl")));
    std::string line;
    while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line));
    return v;
  }
};

}  // namespace

TEST(Llmforge, EveryKeyLoadsAndEachIgnoredKeyWarnsOnce) {
  Workspace w;
  const Config c = w.load();
  // no_gradient_checkpoint: true decides gradient_checkpointing's default, and the resolved config
  // (what checkpoints store) loads again: export and inspect read it
  EXPECT_FALSE(c.get_bool("gradient_checkpointing"));
  const Config again = load_config_from_string(c.dump_yaml(), {}, "stored config", w.dir.path());
  EXPECT_FALSE(again.get_bool("gradient_checkpointing"));
  std::string all;
  for (const std::string& line : c.warnings()) all += line + "\n";
  for (const std::string& key : kNotUsed)
    EXPECT_EQ(count_of(all, "key \"" + key + "\" is accepted and not used: "), 1) << key << "\n" << all;
  EXPECT_EQ(c.warnings().size(), kNotUsed.size()) << all;
  // The repeated key is said in its one warning, with both lines.
  EXPECT_NE(all.find(w.dir.file("cfg.yaml") + ":13: key \"dataset_size_scaling_factor\" is accepted and not used: "
                     "ringtune prepares the dataset before training and counts it exactly (it is set twice: "
                     "again at line 17)"),
            std::string::npos)
      << all;

  // Run-dependent warnings: num_devices against the launcher's ranks, the DeepSpeed stage.
  const std::vector<std::string> run = compat_warnings(c, 1);
  ASSERT_EQ(run.size(), 2u);
  for (const auto& line : run) std::cout << line << "\n";
  EXPECT_NE(run[0].find(":6: key \"num_devices\": 4 devices, but this run has 1 rank(s): ringtune's ranks come "
                        "from the launcher (`mpirun -np 4 ringtune train CONFIG`"),
            std::string::npos)
      << run[0];
  EXPECT_NE(run[1].find(":15: key \"deepspeed\": ringtune does not run DeepSpeed; zero_3.json asks for ZeRO stage 3 "
                        "(optimizer state, gradients and parameters sharded) with offload_param (not done: state "
                        "stays on the device); ringtune uses distributed.zero_stage 1"),
            std::string::npos)
      << run[1];
  EXPECT_EQ(compat_warnings(c, 4).size(), 1u);  // 4 ranks: num_devices agrees

  // Honoured with llmforge's meaning.
  const TrainOptions o = train_options_from_config(c);
  EXPECT_FALSE(o.packing);
  EXPECT_TRUE(o.pad_to_longest);
  EXPECT_EQ(o.global_batch, 2 * 4);  // per device x num_devices, on any number of ranks
  EXPECT_EQ(o.zero_stage, 1);
  EXPECT_FALSE(o.model.gradient_checkpointing);
  EXPECT_EQ(o.model_name, "meta-llama/Meta-Llama-3-8B-Instruct");
  EXPECT_EQ(o.model.base_dir, w.dir.file("base"));
  EXPECT_TRUE(train_options_from_config(w.load({"padding=max_length"})).packing == false);
  EXPECT_FALSE(train_options_from_config(w.load({"padding=max_length"})).pad_to_longest);
  EXPECT_EQ(train_options_from_config(w.load({"distributed.zero_stage=0"})).zero_stage, 0);
  const TrainOptions steps = train_options_from_config(
      w.load({"checkpoint_and_evaluation_frequency={unit: steps, frequency: 3}"}));
  EXPECT_EQ(steps.eval_steps, 3);
  EXPECT_EQ(steps.checkpoint_every, 3);
  EXPECT_EQ(train_options_from_config(w.load({"checkpoint_and_evaluation_frequency={unit: epochs, frequency: 2}"}))
                .every_n_epochs,
            2);
  EXPECT_EQ(train_options_from_config(w.load({"checkpoint_every_n_epochs=3"})).every_n_epochs, 3);
  EXPECT_EQ(train_options_from_config(w.load({"num_epochs=", "min_update_steps=7"})).min_update_steps, 7);
  EXPECT_EQ(train_options_from_config(w.load({"min_update_steps=7"})).min_update_steps, 0);  // num_epochs given
  EXPECT_NE(compat_warnings(w.load({"min_update_steps=7"}), 4).back().find(
                ": key \"min_update_steps\": not used, because num_epochs is given (as in llmforge)"),
            std::string::npos);
  EXPECT_EQ(compat_warnings(w.load({"lora_config.fan_in_fan_out=true"}), 4).back().find("reset to false, as PEFT does") !=
                std::string::npos,
            true);
  EXPECT_EQ(w.load({"task=instruction_tuning"}).get_string("task"), "instruction_tuning");
}

TEST(Llmforge, OtherTasksAndContradictionsAreRefusedNamingTheKey) {
  Workspace w;
  const std::string base = "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\n";
  const std::string bad = w.dir.file("bad.yaml");
  EXPECT_EQ(w.error_of(base + "preference_tuning_config:\n  beta: 0.01\n"),
            bad + ":3: key \"preference_tuning_config\": preference tuning (DPO) is not supported by ringtune (it "
                  "trains by next-token loss on chat or plain text); remove the key");
  EXPECT_EQ(w.error_of(base + "classifier_config:\n  label_tokens: ['[[1]]']\n"),
            bad + ":3: key \"classifier_config\": llmforge's LLM-classifier task is not supported by ringtune (it "
                  "trains by next-token loss on chat or plain text); remove the key");
  EXPECT_NE(w.error_of(base + "task: preference_tuning\n").find(":3: key \"task\": preference_tuning is an llmforge task ringtune does not do"),
            std::string::npos);
  EXPECT_EQ(w.error_of(base + "padding: longest\npacking: true\n"),
            bad + ":3: key \"padding\": llmforge's padding means one sample per sequence, but packing is true; keep one");
  EXPECT_NE(w.error_of(base + "padding: shortest\n").find(":3: key \"padding\": \"shortest\" is not one of longest, max_length"),
            std::string::npos);
  EXPECT_NE(w.error_of(base + "lora_config:\n  r: 8\n  task_type: SEQ_CLS\n").find("\"SEQ_CLS\" is not one of CAUSAL_LM"),
            std::string::npos);
  EXPECT_EQ(w.error_of(base + "checkpoint_and_evaluation_frequency:\n  unit: steps\n"),
            bad + ":4: key \"checkpoint_and_evaluation_frequency.unit\": needs both unit (epochs or steps) and frequency");
  EXPECT_EQ(w.error_of(base + "checkpoint_and_evaluation_frequency:\n  unit: steps\n  frequency: 2\neval_steps: 5\n"),
            bad + ":6: key \"eval_steps\": and checkpoint_and_evaluation_frequency both set when to checkpoint; keep one");
  EXPECT_EQ(w.error_of(base + "no_gradient_checkpoint: true\ngradient_checkpointing: true\n"),
            bad + ":3: key \"no_gradient_checkpoint\": contradicts gradient_checkpointing: true");
  EXPECT_EQ(w.error_of(base + "worker_resources: {a: 1}\nworker_resources: {a: 2}\n"), "(no error)");
  EXPECT_EQ(w.error_of(base + "seed: 1\nseed: 2\n"),
            bad + ":4: key \"seed\" is set twice, to different values (first at line 3)");
  EXPECT_NE(w.error_of(base + "num_device: 4\n").find("unknown key \"num_device\" (did you mean \"num_devices\"?)"),
            std::string::npos);
  // model_id: a local directory is the weights; a Hub id without weights says what to do.
  EXPECT_EQ(w.error_of("model_id: base\ntrain_path: train.jsonl\n"), "(no error)");
  EXPECT_EQ(load_config(bad).get_string("initial_base_model_ckpt_path"), w.dir.file("base"));
  EXPECT_EQ(w.error_of("model_id: meta-llama/Meta-Llama-3-8B\ntrain_path: train.jsonl\n"),
            bad + ":1: key \"model_id\": \"meta-llama/Meta-Llama-3-8B\" is not a local directory and ringtune does not "
                  "download models: download it (e.g. `huggingface-cli download meta-llama/Meta-Llama-3-8B --local-dir "
                  "DIR`) and set initial_base_model_ckpt_path: DIR (model_id stays the name recorded in exported "
                  "adapters)");
}

TEST(Llmforge, TrainsTwoStepsUnpackedWithOneWarningPerIgnoredKey) {
  Workspace w;
  // (no dropout: its masks are drawn per [B, L] position, so batch widths would change them)
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=2 lora_config.lora_dropout=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& key : kNotUsed)
    EXPECT_EQ(count_of(r.err, "key \"" + key + "\" is accepted and not used"), 1) << key << "\n" << r.err;
  EXPECT_EQ(count_of(r.err, "key \"deepspeed\": ringtune does not run DeepSpeed"), 1) << r.err;
  EXPECT_EQ(count_of(r.err, "key \"num_devices\": 4 devices, but this run has 1 rank(s)"), 1) << r.err;
  // padding: longest -> one sample per sequence (48 sequences), each batch as wide as its longest.
  EXPECT_NE(r.err.find("48 sequences of up to 128 tokens per epoch"), std::string::npos) << r.err;
  const auto m = w.metrics();
  ASSERT_EQ(m.size(), 2u);
  for (const auto& line : m) {
    EXPECT_GT(line["seq_len"].get<int64_t>(), 10);
    EXPECT_LT(line["seq_len"].get<int64_t>(), 128);
  }
  // max_length pads to context_length.
  r = run_ringtune("train " + w.dir.file("cfg.yaml") + " max_steps=2 lora_config.lora_dropout=0 padding=max_length output_dir=" +
                   w.dir.file("out2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& line : w.metrics("out2")) EXPECT_EQ(line["seq_len"].get<int64_t>(), 128);
  // The same losses either way (the cut padding carries no loss and no attention).
  const auto longest = w.metrics(), max_length = w.metrics("out2");
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(longest[i]["loss"].get<double>(), max_length[i]["loss"].get<double>(), 1e-4) << i;
}

TEST(Llmforge, MinUpdateStepsEpochFrequencyAndBestCheckpoints) {
  // 48 samples, global batch 2 x 4 devices = 8 -> 6 steps per epoch; min_update_steps 13 -> 3 epochs.
  Workspace w;
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") +
                        " num_epochs= min_update_steps=13 'checkpoint_and_evaluation_frequency={unit: epochs, frequency: 2}'"
                        " num_checkpoints_to_keep=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto m = w.metrics();
  ASSERT_EQ(m.size(), 18u);
  std::vector<int64_t> validated;
  for (const auto& line : m)
    if (line.contains("valid_loss")) validated.push_back(line["step"].get<int64_t>());
  EXPECT_EQ(validated, (std::vector<int64_t>{12, 18}));  // every 2nd epoch, and the end
  // Checkpoints at steps 12 and 18; keep 1 by validation loss, plus the newest.
  const auto left = list_checkpoints(w.dir.file("out"));
  double loss12 = 0, loss18 = 0;
  for (const auto& line : m) {
    if (line["step"] == 12) loss12 = line["valid_loss"].get<double>();
    if (line["step"] == 18) loss18 = line["valid_loss"].get<double>();
  }
  EXPECT_EQ(left.size(), 2u - (loss18 <= loss12 ? 1u : 0u)) << loss12 << " " << loss18;
  EXPECT_EQ(fs::path(left.front()).filename(), "step-00000018.h5");
}

TEST(Llmforge, PruneKeepsTheLowestValidationLossAndTheNewest) {
  TempDir d("ringtune-prune");
  auto save = [&](int64_t step, double loss) {
    CheckpointState st;
    st.step = step;
    st.valid_loss = loss;
    st.trainable.emplace_back("w", torch::zeros({2}));
    st.rng = {1, 2, 3};
    save_checkpoint(d.path(), st);
  };
  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& p : list_checkpoints(d.path())) out.push_back(fs::path(p).filename().string());
    return out;
  };
  save(1, 2.0);
  save(2, 1.0);
  save(3, 1.5);
  save(4, 3.0);
  prune_checkpoints(d.path(), 2);  // best two: steps 2 and 3; and the newest, step 4
  EXPECT_EQ(names(), (std::vector<std::string>{"step-00000004.h5", "step-00000003.h5", "step-00000002.h5"}));
  save(5, std::nan(""));  // no validation at step 5: ranks last, kept as the newest
  prune_checkpoints(d.path(), 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"step-00000005.h5", "step-00000002.h5"}));
  // Without any validation loss: the newest.
  TempDir e("ringtune-prune");
  for (int64_t s = 1; s <= 3; ++s) {
    CheckpointState st;
    st.step = s;
    st.trainable.emplace_back("w", torch::zeros({2}));
    save_checkpoint(e.path(), st);
  }
  prune_checkpoints(e.path(), 2);
  EXPECT_EQ(list_checkpoints(e.path()).size(), 2u);
  EXPECT_EQ(fs::path(list_checkpoints(e.path()).back()).filename(), "step-00000002.h5");
}
