// `ringtune init-model` end to end: the directory it writes loads as a model and a tokenizer that
// round-trips the corpus, generates, is reproducible from the seed, and bad arguments exit 2 with
// the option named and nothing left behind.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "model/llama.h"
#include "src/io/hf_model.h"
#include "src/tokenizer/tokenizer.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

// A few KB of varied English with few distinct characters (lowercase, space and . , '), so a
// 300-piece vocabulary holds 256 bytes, 3 specials, every character and some merges.
std::string small_corpus() {
  const std::vector<std::string> fixed = {
      "once upon a time there was a little girl who lived in a village near the forest.",
      "she liked to walk along the river and watch the boats go by.",
      "one morning, her grandmother asked her to take a basket of bread to the mill.",
      "the miller was an old man with a kind face and a loud laugh.",
      "he told her stories about the winter when the river froze from bank to bank.",
      "the children skated on the ice and the dogs ran after them, barking.",
      "when spring came, the ice broke into pieces and floated away to the sea.",
      "the girl thanked him, walked home before dark, and dreamed of frozen rivers.",
      "a small robot found a red ball in the garden and wondered what it was for.",
      "it rolled the ball to the cat, but the cat was not interested at all.",
      "the dog, however, was very interested, and they played until it was time for dinner.",
      "tom's father built a wooden boat in the yard during the long summer holidays.",
      "every evening they painted a little more of it, blue on the outside and white inside.",
      "in the autumn they carried it to the lake and it floated perfectly.",
  };
  const std::vector<std::string> who = {"the farmer", "a young fox", "my sister", "the teacher",
                                        "an old sailor", "the baker's son", "a tired bird"};
  const std::vector<std::string> did = {"opened", "painted", "carried", "found", "watched",
                                        "forgot", "shared", "cleaned"};
  const std::vector<std::string> what = {"the heavy door", "a bright lantern", "some warm soup",
                                         "the broken fence", "a map of the hills", "two green apples"};
  const std::vector<std::string> when = {"after lunch", "before the storm", "on a quiet sunday",
                                         "at the end of the day", "while it was raining"};
  std::string text;
  for (const auto& line : fixed) text += line + "\n";
  for (size_t i = 0; i < 60; ++i) {
    text += who[i % who.size()] + " " + did[(i * 3) % did.size()] + " " + what[(i * 5) % what.size()] +
            " " + when[(i * 7) % when.size()] + ", and " + who[(i + 2) % who.size()] + " " +
            did[(i + 1) % did.size()] + " " + what[(i + 4) % what.size()] + ".\n";
  }
  return text;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Names in `dir` that look like init-model's scratch directories.
std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos)
      found.push_back(name);
  }
  return found;
}

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// Small-model arguments; the corpus path has a space in it on purpose.
struct InitFixture {
  TempDir tmp{"ringtune-init"};
  std::string corpus = tmp.file("my corpus.txt");
  InitFixture() { write_file(corpus, small_corpus()); }
  std::string args(const std::string& out, const std::string& extra = "") const {
    return "init-model --output " + quote(out) + " --corpus " + quote(corpus) +
           " --vocab-size 300 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --context 64 " + extra;
  }
};

}  // namespace

TEST(InitModel, WritesLoadableModelAndTokenizer) {
  InitFixture s;
  const std::string dir = s.tmp.file("model");
  auto r = run_ringtune(s.args(dir));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("parameters: "), std::string::npos) << r.out;
  EXPECT_EQ(names_in(dir), (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.model",
                                                  "tokenizer_config.json"}));
  EXPECT_TRUE(leftovers(s.tmp.path()).empty());

  const auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  EXPECT_EQ(cfg["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(cfg["hidden_act"], "silu");
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_EQ(cfg["intermediate_size"], 96);  // 8/3 * 32 = 85.3 -> 96
  const auto tok_cfg = nlohmann::json::parse(read_file(dir + "/tokenizer_config.json"));
  EXPECT_EQ(tok_cfg["bos_token"], "<s>");
  EXPECT_EQ(tok_cfg["add_bos_token"], true);

  auto model = load_hf_model(dir);
  const auto& c = model->config();
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.max_position_embeddings, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  // Weights drawn from N(0, 0.02): the embedding's spread says init_weights ran with that std.
  const double sd = model->model->embed_tokens->weight.std().item<double>();
  EXPECT_NEAR(sd, 0.02, 0.002);

  auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->vocab_size(), c.vocab_size);
  EXPECT_LE(c.vocab_size, 300);
  EXPECT_GT(c.vocab_size, 259);
  EXPECT_EQ(tok->special_ids().bos, 1);
  EXPECT_EQ(tok->special_ids().eos, 2);
  EXPECT_EQ(tok->special_ids().unk, 0);
  for (const std::string line : {"she liked to walk along the river and watch the boats go by.",
                                 "tom's father built a wooden boat in the yard during the long summer holidays.",
                                 "Zürich, 1997: \"unseen\" characters go through byte fallback!"}) {
    const auto ids = tok->encode(line);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok->decode(ids), line);
  }
  // Learned merges: a frequent word is fewer pieces than letters.
  EXPECT_LT(tok->encode("the river").size(), 9u);

  auto g = run_ringtune("generate --model " + quote(dir) + " --prompt hello --max-new-tokens 3");
  EXPECT_EQ(g.exit_code, 0) << g.err;
}

TEST(InitModel, SeedDecidesTheWeights) {
  InitFixture s;
  const std::string a = s.tmp.file("a"), b = s.tmp.file("b"), d = s.tmp.file("d");
  ASSERT_EQ(run_ringtune(s.args(a, "--seed 7")).exit_code, 0);
  ASSERT_EQ(run_ringtune(s.args(b, "--seed 7")).exit_code, 0);
  ASSERT_EQ(run_ringtune(s.args(d, "--seed 8")).exit_code, 0);
  // Compared as bools: a failure must not print megabytes of binary.
  EXPECT_TRUE(read_file(a + "/model.safetensors") == read_file(b + "/model.safetensors"));
  EXPECT_TRUE(read_file(a + "/tokenizer.model") == read_file(b + "/tokenizer.model"));
  EXPECT_EQ(read_file(a + "/config.json"), read_file(b + "/config.json"));
  EXPECT_TRUE(read_file(a + "/model.safetensors") != read_file(d + "/model.safetensors"));
  EXPECT_TRUE(read_file(a + "/tokenizer.model") == read_file(d + "/tokenizer.model"));
}

TEST(InitModel, ForceReplacesAnExistingDirectory) {
  InitFixture s;
  const std::string dir = s.tmp.file("model");
  fs::create_directories(dir);
  write_file(dir + "/stale.txt", "old");
  auto r = run_ringtune(s.args(dir));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/stale.txt"));
  r = run_ringtune(s.args(dir, "--force"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/stale.txt"));
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_TRUE(leftovers(s.tmp.path()).empty());
  // An existing empty directory needs no --force; a trailing slash names the same directory.
  const std::string empty = s.tmp.file("empty");
  fs::create_directories(empty);
  r = run_ringtune(s.args(empty + "/"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(empty + "/model.safetensors"));
  EXPECT_EQ(names_in(s.tmp.path()), (std::set<std::string>{"empty", "model", "my corpus.txt"}));
}

TEST(InitModel, SpecialTokensAndChatTemplate) {
  InitFixture s;
  const std::string dir = s.tmp.file("model");
  const std::string tmpl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  write_file(s.tmp.file("chatml.jinja"), tmpl);
  auto r = run_ringtune(s.args(dir, "--special-tokens '<|im_start|>,<|im_end|>' --chat-template " +
                                        quote(s.tmp.file("chatml.jinja"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto tok_cfg = nlohmann::json::parse(read_file(dir + "/tokenizer_config.json"));
  EXPECT_EQ(tok_cfg["chat_template"], tmpl);
  EXPECT_EQ(tok_cfg["additional_special_tokens"], nlohmann::json::array({"<|im_start|>", "<|im_end|>"}));

  auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->token_to_id("<|im_start|>"), 3);
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 4);
  EXPECT_TRUE(tok->is_special(3));
  // Template text spelling them gives the ids; the same spelling as content stays text.
  const std::string text = "<|im_start|>user: hi<|im_end|>";  // (the toy tokenizer normalizes \n to a space)
  EXPECT_EQ(tok->encode(std::vector<TextSegment>{{text, true}}).ids.front(), 3);
  const auto plain = tok->encode(std::vector<TextSegment>{{text, false}}).ids;
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 3) + std::count(plain.begin(), plain.end(), 4), 0);
  EXPECT_EQ(tok->decode(plain), text);

  // A template that does not parse, a bad token list: exit 2, nothing written.
  write_file(s.tmp.file("bad.jinja"), "{% for m in messages %}{{ m.content | tojsn }}{% endfor %}");
  const std::string out = s.tmp.file("model2");
  for (const auto& [extra, expected] : std::vector<std::pair<std::string, std::string>>{
           {"--chat-template " + quote(s.tmp.file("bad.jinja")), "bad.jinja 1:39: unknown filter \"tojsn\""},
           {"--chat-template " + quote(s.tmp.file("none.jinja")), "--chat-template"},
           {"--special-tokens '<a>,,<b>'", "--special-tokens has an empty entry"},
           {"--special-tokens '<s>'", "is already a special token"},
           {"--special-tokens '<a> <b>'", "contains whitespace"}}) {
    auto bad = run_ringtune(s.args(out, extra));
    EXPECT_EQ(bad.exit_code, 2) << extra << "\n" << bad.err;
    EXPECT_NE(bad.err.find(expected), std::string::npos) << extra << "\n" << bad.err;
    EXPECT_FALSE(fs::exists(out)) << extra;
  }
}

// nmt_nfkc (the default) folds newlines and runs of spaces into one space; identity keeps the
// text as written, so a template's "\n" after a header stays a token of its own.
TEST(InitModel, NormalizationRule) {
  InitFixture s;
  const std::string folded = s.tmp.file("nfkc"), kept = s.tmp.file("identity");
  ASSERT_EQ(run_ringtune(s.args(folded)).exit_code, 0);
  auto r = run_ringtune(s.args(kept, "--normalization identity"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string text = "the river\nthe  boat";
  EXPECT_EQ(load_tokenizer(folded)->decode(load_tokenizer(folded)->encode(text)), "the river the boat");
  EXPECT_EQ(load_tokenizer(kept)->decode(load_tokenizer(kept)->encode(text)), text);
  r = run_ringtune(s.args(s.tmp.file("bad"), "--normalization nfc"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--normalization \"nfc\" is not supported (nmt_nfkc, identity)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(s.tmp.file("bad")));
}

TEST(InitModel, BadArgumentsExitTwoNamingTheOption) {
  InitFixture s;
  const std::string out = s.tmp.file("model");
  const std::string empty_corpus = s.tmp.file("empty.txt");
  write_file(empty_corpus, "");
  const std::string base = "init-model --output " + quote(out) + " --corpus " + quote(s.corpus);
  struct Case {
    std::string args, option;
  };
  const std::vector<Case> cases = {
      {"init-model --corpus " + quote(s.corpus), "--output"},
      {"init-model --output " + quote(out), "--corpus"},
      {"init-model --output " + quote(out) + " --corpus " + quote(s.tmp.file("missing.txt")), "--corpus"},
      {"init-model --output " + quote(out) + " --corpus " + quote(empty_corpus), "--corpus"},
      {base + " --hidden 0", "--hidden"},
      {base + " --layers -1", "--layers"},
      {base + " --heads 0", "--heads"},
      {base + " --hidden 30 --heads 4", "--heads"},
      {base + " --heads 4 --kv-heads 3", "--kv-heads"},
      {base + " --kv-heads 0", "--kv-heads"},
      {base + " --context 0", "--context"},
      {base + " --intermediate -5", "--intermediate"},
      {base + " --vocab-size 100", "--vocab-size"},
      {base + " --vocab-size abc", "--vocab-size"},
      {base + " --model-type gpt2", "--model-type"},
      {base + " --hiden 32", "--hidden"},
      {"init-model --output . --corpus " + quote(s.corpus), "--output"},
      {"init-model --output " + quote(s.tmp.path() + "/..") + " --corpus " + quote(s.corpus), "--output"},
      // Fails inside tokenizer training, after the scratch directory exists.
      {base + " --vocab-size 262", "--vocab-size"},
  };
  for (const auto& c : cases) {
    auto r = run_ringtune(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.option), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.args;
    EXPECT_TRUE(leftovers(s.tmp.path()).empty()) << c.args;
  }
}
