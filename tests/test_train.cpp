// `ringtune train` end to end on a tiny random model with Llama 2's tokenizer: LoRA and full
// fine-tuning reduce the loss, metrics.jsonl has every field, the exports have PEFT's / Hugging
// Face's layout, bad configs are refused before training, and the first five step losses of a
// fixed-seed run are recorded (a regression test).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "src/io/safetensors.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

struct TrainWorkspace {
  TempDir dir{"ringtune-train"};
  TrainWorkspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    std::string lines;
    const char* cities[] = {"Berlin", "Paris", "Rome", "Madrid", "Oslo", "Vienna", "Lisbon", "Prague"};
    for (int i = 0; i < 48; ++i) {
      const std::string city = cities[i % 8];
      nlohmann::json sample = {{"messages", {{{"role", "user"}, {"content", "Weather in " + city + "?"}},
                                             {{"role", "assistant"}, {"content", "weather(location=\"" + city + "\")"}}}}};
      lines += sample.dump() + "\n";
    }
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
      {"tokenizer_path=" + fixtures_dir() + "/tokenizers/llama3-hf", "outside the model's vocabulary"},
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
