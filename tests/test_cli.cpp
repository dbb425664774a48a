// The `ringtune` binary end to end on the stories260k fixture: generate, logits, inspect, --help,
// and exit code 2 with a one-line error for bad input.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "src/io/safetensors.h"

#include <filesystem>
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {
std::string join_ids(const nlohmann::json& a) {
  std::string s;
  for (const auto& v : a) s += (s.empty() ? "" : ",") + std::to_string(v.get<int64_t>());
  return s;
}
nlohmann::json reference_meta() {
  return nlohmann::json::parse(read_file(stories_dir() + "/reference.json"));
}
int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST(Cli, GenerateGreedyFromBosPrintsReferenceIds) {
  auto r = run_ringtune("generate --model " + stories_dir() + " --max-new-tokens 64");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, join_ids(reference_meta()["greedy_from_bos"]) + "\n");
}

TEST(Cli, GenerateFromPromptPrintsReferenceIds) {
  auto meta = reference_meta();
  auto r = run_ringtune("generate --model " + stories_dir() + " --prompt-ids " +
                        join_ids(meta["greedy_prompt"]) + " --max-new-tokens 40");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, join_ids(meta["greedy_from_prompt"]) + "\n");
}

TEST(Cli, LogitsWritesReferenceLogitsAndLoss) {
  TempDir tmp;
  const std::string out = tmp.file("logits.safetensors");
  auto r = run_ringtune("logits --model " + stories_dir() + " --input " + stories_dir() +
                        "/reference.safetensors --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafeTensorsFile got(out), ref(stories_dir() + "/reference.safetensors");
  EXPECT_EQ(got.info("logits").dtype, "F32");
  const double max_abs = (got.load("logits") - ref.load("logits")).abs().max().item<double>();
  EXPECT_LT(max_abs, 2e-4);
  const double loss = std::stod(r.out.substr(r.out.find(' ') + 1));
  EXPECT_NEAR(loss, reference_meta()["loss_mean_next_token"].get<double>(), 1e-5);
}

TEST(Cli, InspectPrintsArchitecture) {
  auto r = run_ringtune("inspect " + stories_dir());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("architecture: llama decoder, 5 layers, hidden 64, intermediate 172, heads 8 (kv 4, grouped-query), head_dim 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vocab: 512, context: 512, embeddings tied"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters (from config): 260032"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stored parameters 260032"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.*.self_attn.k_proj.weight  F32 [32, 64]  x5"), std::string::npos) << r.out;
}

TEST(Cli, HelpPerSubcommand) {
  for (const char* cmd : {"logits", "generate", "inspect"}) {
    auto r = run_ringtune(std::string(cmd) + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find(std::string("usage: ringtune ") + cmd), std::string::npos) << cmd;
  }
  auto r = run_ringtune("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
}

TEST(Cli, BadInputExitsTwoWithOneLine) {
  struct Case {
    std::string args, expected;
  };
  const std::vector<Case> cases = {
      {"generat --model x", "unknown command \"generat\" (did you mean \"generate\"?)"},
      {"generate --model " + stories_dir() + " --max-new-token 3", "unknown option --max-new-token (did you mean --max-new-tokens?)"},
      {"generate --model " + stories_dir() + " --prompt-ids 1,x", "--prompt-ids: \"x\" is not an integer"},
      {"generate --model " + stories_dir() + " --prompt-ids 1,9999", "--prompt-ids: id 9999 outside the vocabulary [0, 512)"},
      {"generate --model /nonexistent", "/nonexistent/config.json: cannot open"},
      {"generate", "missing --model"},
      {"logits --model " + stories_dir() + " --input " + stories_dir() + "/model.safetensors --output /tmp/x.safetensors",
       "missing tensor \"tokens\""},
      {"inspect /nonexistent", "/nonexistent: no such file or directory"},
      {"generate --model " + stories_dir() + " --log-level loud", "unknown level \"loud\""},
  };
  for (const auto& c : cases) {
    auto r = run_ringtune(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(r.out, "") << c.args;
  }
}

TEST(Cli, SampledGenerationIsSeededAndCachedEqualsRecomputed) {
  const std::string base = "generate --model " + stories_dir() + " --max-new-tokens 30 --temperature 0.8 --top-p 0.9";
  auto a = run_ringtune(base + " --seed 11");
  auto b = run_ringtune(base + " --seed 11 --no-cache");
  auto c = run_ringtune(base + " --seed 12");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(Cli, GenerateWithTokenizerEncodesPromptAndPrintsText) {
  // A tiny random model with Llama 2's vocabulary, beside Llama 2's tokenizer.model.
  TempDir dir("ringtune-gen");
  write_tiny_llama(dir.path(), 32000, 16, 1, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
  auto r = run_ringtune("generate --model " + dir.path() + " --prompt 'Hello world' --max-new-tokens 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto nl = r.out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  // sentencepiece: "Hello world" -> [15043, 3186]; BOS 1 first.
  EXPECT_EQ(r.out.substr(0, 13), "1,15043,3186,") << r.out;
  EXPECT_NE(r.out.find("Hello world", nl), std::string::npos) << r.out;
  auto both = run_ringtune("generate --model " + dir.path() + " --prompt hi --prompt-ids 1");
  EXPECT_EQ(both.exit_code, 2);
  auto no_tok = run_ringtune("generate --model " + stories_dir() + " --prompt hi");
  EXPECT_EQ(no_tok.exit_code, 2);
  EXPECT_NE(no_tok.err.find("--prompt needs a tokenizer"), std::string::npos) << no_tok.err;
}
