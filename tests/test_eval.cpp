// Adapters, `eval` and `generate --messages` end to end on a tiny random model with Llama 2's
// tokenizer, LoRA-trained (plus embed_tokens in full) to memorise three chat samples:
//  - the three adapter forms (PEFT dir, checkpoint .h5, output_dir) load to identical logits, which
//    equal the merged export's, and differ from the base model's;
//  - every mismatch (rank, target modules, missing tensor, other base model, bad JSON) exits 2
//    naming the file;
//  - eval's loss and perplexity equal a direct per-sample computation;
//  - exact match is 1 on the memorised samples and 0 with wrong references and on the base model;
//  - generate --messages prints eval's generation and stops at the end-of-turn token;
//  - a Jinja chat template (config chat_template) that renders the llama2 preset's text gives the
//    same ids and masks, and eval through it the same loss and exact match.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>

#include "model/llama.h"
#include "model/lora.h"
#include "src/config/registry.h"
#include "src/options/data_options.h"
#include "src/data/dataset.h"
#include "src/io/adapter_io.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

struct Qa {
  const char* user;
  const char* answer;
};
const Qa kSamples[] = {{"Weather in Berlin?", "weather(location=\"Berlin\")"},
                       {"What time is it?", "timecheck()"},
                       {"Play some jazz", "music(genre=\"jazz\")"}};

std::string chat_line(const std::string& user, const std::string& answer) {
  return nlohmann::json{{"messages", {{{"role", "user"}, {"content", user}}, {{"role", "assistant"}, {"content", answer}}}}}
             .dump() +
         "\n";
}

// One trained run shared by the tests of this file (training takes a few seconds).
struct Workspace {
  TempDir dir{"ringtune-eval"};
  std::string train_err;
  int train_rc = -1;
  Workspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    std::string train, valid, wrong;
    for (int copy = 0; copy < 8; ++copy)
      for (const auto& s : kSamples) train += chat_line(s.user, s.answer);
    for (const auto& s : kSamples) valid += chat_line(s.user, s.answer);
    for (size_t i = 0; i < 3; ++i) wrong += chat_line(kSamples[i].user, kSamples[(i + 1) % 3].answer);
    write_file(dir.file("train.jsonl"), train);
    write_file(dir.file("valid.jsonl"), valid);
    write_file(dir.file("wrong.jsonl"), wrong);
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\nvalid_path: valid.jsonl\n"
               "test_path: valid.jsonl\noutput_dir: out\ndtype: float32\ncontext_length: 64\n"
               "generation_config:\n  prompt_format: llama2\nlearning_rate: 0.02\nlr_scheduler_type: constant\n"
               "global_batch_size: 6\ntrain_batch_size_per_device: 6\nmax_steps: 40\nseed: 7\n"
               "lora_config:\n  r: 8\n  lora_alpha: 16\n  lora_dropout: 0\n  target_modules: [all-linear]\n"
               "  modules_to_save: [embed_tokens]\n"
               "eval:\n  generation: exact_match\n  max_new_tokens: 24\n");
    const auto r = run_ringtune("train " + dir.file("cfg.yaml"));
    train_rc = r.exit_code;
    train_err = r.err;
  }
  std::string base() const { return dir.file("base"); }
  std::string out() const { return dir.file("out"); }
};

Workspace& ws() {
  static std::unique_ptr<Workspace> w(new Workspace);
  return *w;
}

class Eval : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(ws().train_rc, 0) << ws().train_err; }
};

torch::Tensor probe_tokens() {
  return torch::tensor({1, 8, 100, 2000, 31000, 5, 77, 1234, 29871, 3}, torch::kInt64).unsqueeze(0);
}

torch::Tensor logits_with(const std::string& adapter) {
  LlamaForCausalLM m = load_hf_model(ws().base(), "float32", "cpu");
  if (!adapter.empty()) load_adapter(m, adapter);
  m->eval();
  torch::NoGradGuard ng;
  return m->forward(probe_tokens());
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

double value_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key + " ");
  if (at == std::string::npos) return std::nan("");
  return std::stod(text.substr(at + key.size() + 1));
}

}  // namespace

TEST_F(Eval, AdapterFormsLoadToIdenticalLogits) {
  const auto& w = ws();
  auto ex = run_ringtune("export --checkpoint " + w.out() + " --format peft --output " + w.dir.file("peft"));
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  auto mg = run_ringtune("export --checkpoint " + w.out() + " --format merged --output " + w.dir.file("merged"));
  ASSERT_EQ(mg.exit_code, 0) << mg.err;
  std::string latest = read_file(w.out() + "/checkpoints/latest");
  latest.erase(latest.find_last_not_of(" \n") + 1);
  const std::string h5 = w.out() + "/checkpoints/" + latest;
  ASSERT_TRUE(fs::exists(h5)) << h5;

  const auto from_peft = logits_with(w.dir.file("peft"));
  const auto from_train_export = logits_with(w.out() + "/adapter");
  const auto from_h5 = logits_with(h5);
  const auto from_dir = logits_with(w.out());
  const auto base = logits_with("");
  EXPECT_TRUE(torch::equal(from_peft, from_h5));
  EXPECT_TRUE(torch::equal(from_train_export, from_h5));
  EXPECT_TRUE(torch::equal(from_dir, from_h5));
  EXPECT_GT((from_h5 - base).abs().max().item<double>(), 1e-2) << "the adapter should change the model";

  LlamaForCausalLM merged = load_hf_model(w.dir.file("merged"), "float32", "cpu");
  merged->eval();
  torch::NoGradGuard ng;
  const auto from_merged = merged->forward(probe_tokens());
  EXPECT_LT((from_merged - from_h5).abs().max().item<double>(), 1e-4);

  LoraOptions lo;
  LlamaForCausalLM m = load_hf_model(w.base(), "float32", "cpu");
  const AdapterInfo info = load_adapter(m, w.dir.file("peft"), &lo);
  EXPECT_EQ(info.kind, "peft");
  EXPECT_TRUE(info.lora);
  EXPECT_EQ(lo.r, 8);
  EXPECT_EQ(lo.modules_to_save, std::vector<std::string>{"embed_tokens"});
  EXPECT_EQ(info.tensors, 2 * 2 * 7 + 1);  // A and B on 7 modules of 2 layers, and embed_tokens
}

TEST_F(Eval, MismatchesExitTwoNamingTheFile) {
  const auto& w = ws();
  const std::string peft = w.dir.file("peft-bad");
  fs::remove_all(peft);
  auto ex = run_ringtune("export --checkpoint " + w.out() + " --format peft --output " + peft);
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  const std::string cfg_path = peft + "/adapter_config.json";
  const std::string good_cfg = read_file(cfg_path);
  auto gen = [&](const std::string& model, const std::string& adapter) {
    return run_ringtune("generate --model " + model + " --adapter " + adapter + " --max-new-tokens 1");
  };
  auto expect_error = [&](const std::string& what, const RunResult& r, const std::vector<std::string>& parts) {
    EXPECT_EQ(r.exit_code, 2) << what << ": " << r.err;
    const size_t at = r.err.find("error: ");
    ASSERT_NE(at, std::string::npos) << what << ": " << r.err;
    const std::string line = r.err.substr(at, r.err.find('\n', at) - at);  // the one error line
    for (const auto& s : parts) EXPECT_NE(line.find(s), std::string::npos) << what << ": no \"" << s << "\" in " << line;
  };
  {  // rank in the config not matching the tensors
    auto j = nlohmann::json::parse(good_cfg);
    j["r"] = 4;
    write_file(cfg_path, j.dump());
    expect_error("rank", gen(w.base(), peft), {"adapter_model.safetensors", "lora_A.weight", "r=4"});
  }
  {  // a tensor for a module the config does not target
    auto j = nlohmann::json::parse(good_cfg);
    j["target_modules"] = {"q_proj", "v_proj"};
    write_file(cfg_path, j.dump());
    expect_error("targets", gen(w.base(), peft), {"adapter_model.safetensors", ".lora_A.weight does not fit"});
  }
  {  // unknown module name
    auto j = nlohmann::json::parse(good_cfg);
    j["target_modules"] = {"qkv_proj"};
    write_file(cfg_path, j.dump());
    expect_error("unknown target", gen(w.base(), peft), {"adapter_config.json", "qkv_proj"});
  }
  write_file(cfg_path, "{not json");
  expect_error("bad json", gen(w.base(), peft), {"adapter_config.json"});
  write_file(cfg_path, good_cfg);
  {  // a missing adapter tensor
    SafeTensorsFile f(peft + "/adapter_model.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> kept;
    for (const auto& [name, info] : f.tensors())
      if (name.find("layers.1.mlp.up_proj.lora_B") == std::string::npos) kept.emplace_back(name, f.load(name));
    write_safetensors(peft + "/adapter_model.safetensors", kept);
  }
  expect_error("missing", gen(w.base(), peft), {"adapter_model.safetensors", "missing tensor", "layers.1.mlp.up_proj.lora_B"});
  // Another base model shape: the adapter and the checkpoint both refuse it.
  write_tiny_llama(w.dir.file("base48"), 32000, 48, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
  expect_error("other base (peft)", gen(w.dir.file("base48"), w.out() + "/adapter"), {"adapter_model.safetensors", "shape"});
  expect_error("other base (ckpt)", gen(w.dir.file("base48"), w.out()), {".h5", "shape"});
  expect_error("nonexistent", gen(w.base(), w.dir.file("nope")), {"nope"});
  expect_error("not an adapter", gen(w.base(), w.dir.path()), {w.dir.path(), "adapter_config.json"});
}

TEST_F(Eval, LossAndPerplexityEqualDirectComputation) {
  const auto& w = ws();
  auto r = run_ringtune("eval " + w.dir.file("cfg.yaml") + " eval.generation=none --output " + w.dir.file("loss.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("checkpoint"), std::string::npos) << "the log says which weights: " << r.err;
  const double loss = value_after(r.out, "valid_loss"), ppl = value_after(r.out, "valid_perplexity");
  ASSERT_TRUE(std::isfinite(loss)) << r.out;

  // Direct: each valid sample alone, log-softmax at every supervised target.
  const Config cfg = load_config(w.dir.file("cfg.yaml"));
  const DataPipeline pipe = make_data_pipeline(cfg);
  DatasetReader reader({w.dir.file("valid.jsonl")}, pipe.options, pipe.format, *pipe.tokenizer);
  LlamaForCausalLM m = load_hf_model(w.base(), "float32", "cpu");
  load_adapter(m, w.out());
  m->eval();
  torch::NoGradGuard ng;
  double sum = 0;
  int64_t count = 0;
  EncodedSample s;
  while (reader.next(s)) {
    const auto ids = torch::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.end())).unsqueeze(0);
    const auto logp = torch::log_softmax(m->forward(ids)[0].to(torch::kFloat64), -1);
    for (size_t t = 1; t < s.ids.size(); ++t)
      if (s.loss_mask[t]) {
        sum -= logp[t - 1][s.ids[t]].item<double>();
        ++count;
      }
  }
  ASSERT_GT(count, 0);
  EXPECT_NEAR(loss, sum / count, 1e-5 * std::max(1.0, std::abs(loss)));
  EXPECT_NEAR(ppl, std::exp(sum / count), 1e-4 * std::exp(sum / count));
  auto j = nlohmann::json::parse(read_file(w.dir.file("loss.json")));
  EXPECT_NEAR(j["valid_loss"].get<double>(), sum / count, 1e-5);
  EXPECT_EQ(j["valid_supervised_tokens"].get<int64_t>(), count);
  EXPECT_EQ(j["weights_kind"], "checkpoint");
}

TEST_F(Eval, ExactMatchIsOneOnMemorisedAndZeroOnWrongReferences) {
  const auto& w = ws();
  auto r = run_ringtune("eval " + w.dir.file("cfg.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("exact_match 1.0000 (3/3)"), std::string::npos) << r.out << r.err;
  const auto recs = read_jsonl(w.out() + "/eval_generations.jsonl");
  ASSERT_EQ(recs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(recs[i]["reference"], kSamples[i].answer);
    EXPECT_EQ(recs[i]["generated"], kSamples[i].answer);
    EXPECT_EQ(recs[i]["match"], true);
    EXPECT_EQ(recs[i]["stopped"], true) << "stops at the end-of-turn token";
    EXPECT_EQ(recs[i]["prompt"], std::string("<s>[INST] ") + kSamples[i].user + " [/INST]");
  }
  auto summary = nlohmann::json::parse(read_file(w.out() + "/eval.json"));
  EXPECT_EQ(summary["exact_match"]["correct"], 3);
  EXPECT_EQ(summary["exact_match"]["total"], 3);
  EXPECT_TRUE(summary.contains("valid_loss"));

  auto wrong = run_ringtune("eval " + w.dir.file("cfg.yaml") + " test_path=" + w.dir.file("wrong.jsonl") + " --output " + w.dir.file("wrong.json"));
  ASSERT_EQ(wrong.exit_code, 0) << wrong.err;
  EXPECT_NE(wrong.out.find("exact_match 0.0000 (0/3)"), std::string::npos) << wrong.out;
  EXPECT_EQ(read_jsonl(w.dir.file("wrong_generations.jsonl")).size(), 3u);

  auto base = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --checkpoint none --output " + w.dir.file("base.json"));
  ASSERT_EQ(base.exit_code, 0) << base.err;
  EXPECT_NE(base.out.find("exact_match 0.0000 (0/3)"), std::string::npos) << base.out;
  EXPECT_GT(value_after(base.out, "valid_loss"), value_after(r.out, "valid_loss") + 1.0);

  // Bad input: exit 2 with one line naming the file or key.
  write_file(w.dir.file("bad.jsonl"), chat_line("a", "b") + "{\"messages\": 3}\n");
  auto bad = run_ringtune("eval " + w.dir.file("cfg.yaml") + " test_path=" + w.dir.file("bad.jsonl") + " --output " + w.dir.file("bad.json"));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("bad.jsonl:2"), std::string::npos) << bad.err;
  auto bad_ckpt = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --checkpoint " + w.dir.file("nope.h5"));
  EXPECT_EQ(bad_ckpt.exit_code, 2);
  EXPECT_NE(bad_ckpt.err.find("nope.h5"), std::string::npos) << bad_ckpt.err;
}

TEST_F(Eval, GenerateMessagesPrintsEvalsReplyAndStopsAtEndOfTurn) {
  const auto& w = ws();
  auto r = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --output " + w.dir.file("gm.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto recs = read_jsonl(w.dir.file("gm_generations.jsonl"));
  ASSERT_EQ(recs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    // A training sample (ending with the reference) and a bare array ending with the user turn.
    const std::string msgs = w.dir.file("m" + std::to_string(i) + ".json");
    write_file(msgs, i == 0 ? chat_line(kSamples[i].user, kSamples[i].answer)
                            : nlohmann::json::array({{{"role", "user"}, {"content", kSamples[i].user}}}).dump());
    const std::string adapter = i == 2 ? w.out() + "/adapter --format llama2" : w.out();  // format from the checkpoint
    auto g = run_ringtune("generate --model " + w.base() + " --adapter " + adapter + " --messages " + msgs +
                          " --max-new-tokens 100");
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_EQ(g.out, recs[i]["generated"].get<std::string>() + "\n");
    EXPECT_NE(g.err.find("ended at the end-of-turn token"), std::string::npos) << g.err;
  }
  // Without the adapter the (random) base model gives another reply.
  auto b = run_ringtune("generate --model " + w.base() + " --format llama2 --messages " + w.dir.file("m1.json") +
                        " --max-new-tokens 8");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out, recs[1]["generated"].get<std::string>() + "\n");
  auto bad = run_ringtune("generate --model " + w.base() + " --messages " + w.dir.file("train.jsonl"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("train.jsonl"), std::string::npos) << bad.err;
  // The prompt is read and checked before the weights load: with weights that would not load, the
  // error still names the bad messages file, and a prompt longer than the context is refused.
  const std::string broken = w.dir.file("broken-base");
  fs::create_directories(broken);
  for (const auto& e : fs::directory_iterator(w.base()))
    if (e.path().extension() != ".safetensors") fs::copy(e.path(), broken + "/" + e.path().filename().string());
  write_file(broken + "/model.safetensors", "not a safetensors file");
  auto early = run_ringtune("generate --model " + broken + " --messages " + w.dir.file("train.jsonl"));
  EXPECT_EQ(early.exit_code, 2);
  EXPECT_NE(early.err.find("train.jsonl"), std::string::npos) << early.err;
  EXPECT_EQ(early.err.find("safetensors"), std::string::npos) << early.err;
  std::string ids = "1";
  for (int i = 0; i < 600; ++i) ids += ",2";
  auto longer = run_ringtune("generate --model " + broken + " --prompt-ids " + ids);
  EXPECT_EQ(longer.exit_code, 2);
  EXPECT_NE(longer.err.find("the prompt is 601 tokens; " + broken + "/config.json: max_position_embeddings"),
            std::string::npos)
      << longer.err;
  auto weights = run_ringtune("generate --model " + broken + " --prompt-ids 1,2");
  EXPECT_EQ(weights.exit_code, 2);
  EXPECT_NE(weights.err.find("model.safetensors"), std::string::npos) << weights.err;
}

TEST_F(Eval, AJinjaTemplateWithThePresetsTextScoresTheSame) {
  const auto& w = ws();
  // Llama 2's layout written as a chat template (bos_token and eos_token come from the tokenizer).
  write_file(w.dir.file("llama2.jinja"),
             "{% for m in messages %}{% if m.role == 'user' %}{{ bos_token }}[INST] {{ m.content | trim }} [/INST]"
             "{% elif m.role == 'assistant' %} {{ m.content | trim }} {{ eos_token }}{% endif %}{% endfor %}");
  const std::string jinja = " generation_config.prompt_format=auto chat_template=" + w.dir.file("llama2.jinja");
  auto preset = run_ringtune("render " + w.dir.file("cfg.yaml") + " --format json --n 30");
  auto templ = run_ringtune("render " + w.dir.file("cfg.yaml") + " --format json --n 30" + jinja);
  ASSERT_EQ(preset.exit_code, 0) << preset.err;
  ASSERT_EQ(templ.exit_code, 0) << templ.err;
  EXPECT_NE(templ.err.find("the chat template of " + w.dir.file("llama2.jinja")), std::string::npos) << templ.err;
  EXPECT_EQ(std::count(templ.out.begin(), templ.out.end(), '\n'), 24);
  EXPECT_EQ(preset.out, templ.out);  // text, ids and masks of every sample

  auto a = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --output " + w.dir.file("ev-preset.json"));
  auto b = run_ringtune("eval " + w.dir.file("cfg.yaml") + " --output " + w.dir.file("ev-jinja.json") + jinja);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto ja = nlohmann::json::parse(read_file(w.dir.file("ev-preset.json")));
  const auto jb = nlohmann::json::parse(read_file(w.dir.file("ev-jinja.json")));
  EXPECT_EQ(jb["exact_match"]["correct"], 3) << jb.dump();
  EXPECT_EQ(ja["exact_match"]["correct"], jb["exact_match"]["correct"]);
  EXPECT_EQ(ja["valid_loss"], jb["valid_loss"]);
  EXPECT_EQ(read_file(w.dir.file("ev-preset_generations.jsonl")), read_file(w.dir.file("ev-jinja_generations.jsonl")));
}
