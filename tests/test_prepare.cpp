// Prepared (tokenized) datasets in HDF5 and the data commands: the cache equals a fresh read,
// is reused when nothing changed and rebuilt (saying why) when data, tokenizer or format change;
// corruption is detected; `render --format json` and `tokenize` give the library's ids and masks.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "src/config/registry.h"
#include "src/options/data_options.h"
#include "src/io/prepared_dataset.h"
#include "src/error.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

const char* kChat =
    R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital of France?"},{"role":"assistant","content":"Paris."}]})"
    "\n"
    R"({"messages":[{"role":"user","content":"Spell <|eot_id|> for me"},{"role":"assistant","content":"No."},{"role":"user","content":"Why?"},{"role":"assistant","content":"Rules."}]})"
    "\n"
    R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]})"
    "\n";

struct Workspace {
  TempDir dir{"ringtune-prep"};
  std::string tokenizer_dir;
  Workspace() {
    tokenizer_dir = dir.file("tok");
    fs::create_directories(tokenizer_dir);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(fixtures_dir() + "/tokenizers/llama3-hf/" + f, tokenizer_dir + "/" + f);
    write_file(dir.file("train.jsonl"), std::string(kChat).substr(0, std::string(kChat).rfind("{\"messages")));
    // The model directory holds only the tokenizer: prepare, render and tokenize read no weights.
    write_file(dir.file("cfg.yaml"), "initial_base_model_ckpt_path: tok\ntokenizer_path: tok\ntrain_path: train.jsonl\n"
                                         "generation_config:\n  prompt_format: llama3\n"
                                         "context_length: 64\noutput_dir: out\n");
  }
  Config config(const std::vector<std::string>& overrides = {}) const {
    return load_config(dir.file("cfg.yaml"), overrides);
  }
  std::string cache() const { return dir.file("out/prepared/train.h5"); }
};

}  // namespace

TEST(Prepare, CacheEqualsAFreshReadAndRoundTrips) {
  Workspace w;
  const Config cfg = w.config();
  const DataPipeline pipe = make_data_pipeline(cfg);
  auto r = prepare_dataset(pipe, {cfg.get_string("train_path")}, w.cache());
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(r.reason, "new");
  EXPECT_FALSE(fs::exists(w.cache() + ".tmp"));
  const PreparedDataset d = PreparedDataset::load(w.cache());
  DatasetReader reader({cfg.get_string("train_path")}, pipe.options, pipe.format, *pipe.tokenizer);
  EncodedSample s;
  int64_t i = 0, supervised = 0;
  while (reader.next(s)) {
    ASSERT_LT(i, d.size());
    std::vector<int32_t> ids(d.ids.begin() + d.offsets[i], d.ids.begin() + d.offsets[i + 1]);
    std::vector<uint8_t> mask(d.loss_mask.begin() + d.offsets[i], d.loss_mask.begin() + d.offsets[i + 1]);
    EXPECT_EQ(ids, s.ids);
    EXPECT_EQ(mask, s.loss_mask);
    EXPECT_EQ(d.source_line[i], s.line);
    for (auto m : s.loss_mask) supervised += m;
    ++i;
  }
  EXPECT_EQ(i, 2);
  EXPECT_EQ(d.stats.samples, 2);
  EXPECT_EQ(d.stats.supervised_tokens, supervised);
  EXPECT_EQ(d.stats.length_max, std::max(d.offsets[1], d.offsets[2] - d.offsets[1]));
  // "Paris." + <|eot_id|>: the supervised tokens of the first sample decode to the answer.
  std::vector<int32_t> sup;
  for (int64_t t = d.offsets[0]; t < d.offsets[1]; ++t)
    if (d.loss_mask[t]) sup.push_back(d.ids[t]);
  EXPECT_EQ(pipe.tokenizer->decode(sup), "Paris.<|eot_id|>");
}

TEST(Prepare, ReusedOrRebuiltSayingWhatChanged) {
  Workspace w;
  auto prep = [&](const std::vector<std::string>& ov = {}) {
    const Config cfg = w.config(ov);
    return prepare_dataset(make_data_pipeline(cfg), {cfg.get_string("train_path")}, w.cache());
  };
  EXPECT_EQ(prep().reason, "new");
  EXPECT_TRUE(prep().reused);
  EXPECT_EQ(prep({"train_on=last_assistant"}).reason, "prompt format or data options changed");
  EXPECT_TRUE(prep({"train_on=last_assistant"}).reused);
  write_file(w.dir.file("train.jsonl"), kChat);  // one more sample
  auto r = prep({"train_on=last_assistant"});
  EXPECT_EQ(r.reason, "data changed");
  EXPECT_EQ(r.stats.samples, 3);
  {  // a different tokenizer file (an added token changes the ids)
    std::ofstream(w.tokenizer_dir + "/tokenizer_config.json", std::ios::app) << "\n";
  }
  EXPECT_EQ(prep({"train_on=last_assistant"}).reason, "tokenizer changed");
  write_file(w.cache(), "not hdf5");
  EXPECT_NE(prep({"train_on=last_assistant"}).reason.find("unreadable cache"), std::string::npos);
}

TEST(Prepare, CorruptionIsDetectedByChecksum) {
  Workspace w;
  const Config cfg = w.config();
  prepare_dataset(make_data_pipeline(cfg), {cfg.get_string("train_path")}, w.cache());
  std::string raw = read_file(w.cache());
  // Flip bytes inside the ids chunk: find the first sample's token 128006 (little endian).
  const std::string needle("\x06\xf4\x01\x00", 4);
  const auto pos = raw.find(needle);
  ASSERT_NE(pos, std::string::npos);
  raw[pos] = '\x07';
  write_file(w.cache(), raw);
  try {
    PreparedDataset::load(w.cache());
    FAIL() << "corruption not detected";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("failed its checksum"), std::string::npos) << e.what();
  }
}

TEST(Prepare, CommandsRenderTokenizeAndPrepare) {
  Workspace w;
  auto r = run_ringtune("render " + w.dir.file("cfg.yaml") + " --format json --n 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Config cfg = w.config();
  const DataPipeline pipe = make_data_pipeline(cfg);
  DatasetReader reader({cfg.get_string("train_path")}, pipe.options, pipe.format, *pipe.tokenizer);
  reader.set_keep_text(true);
  std::istringstream lines(r.out);
  std::string line;
  EncodedSample s;
  int n = 0;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(reader.next(s));
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["text"].get<std::string>(), s.text);
    EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), s.ids);
    EXPECT_EQ(j["mask"].get<std::vector<uint8_t>>(), s.loss_mask);
    ++n;
  }
  EXPECT_EQ(n, 2);

  write_file(w.dir.file("t.jsonl"), "{\"text\": \"Hello <|eot_id|>\"}\n\n{\"text\": \"x\"}\n");
  auto t = run_ringtune("tokenize --tokenizer " + w.tokenizer_dir + " --input " + w.dir.file("t.jsonl") +
                        " --output " + w.dir.file("ids.jsonl"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string ids = read_file(w.dir.file("ids.jsonl"));
  auto first = nlohmann::json::parse(ids.substr(0, ids.find('\n')))["ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(first, pipe.tokenizer->encode("Hello <|eot_id|>", false));
  auto special = run_ringtune("tokenize --tokenizer " + w.tokenizer_dir + " --input " + w.dir.file("t.jsonl") +
                              " --parse-special --add-special-tokens");
  EXPECT_EQ(special.out.substr(0, special.out.find('\n')), "{\"ids\":[128000,9906,220,128009]}");

  write_file(w.dir.file("bad.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
  auto bad = run_ringtune("tokenize --tokenizer " + w.tokenizer_dir + " --input " + w.dir.file("bad.jsonl") +
                          " --output " + w.dir.file("bad_ids.jsonl"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find(w.dir.file("bad.jsonl") + ":2: expected an object with a string \"text\""), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(w.dir.file("bad_ids.jsonl")));      // nothing half-written
  EXPECT_FALSE(fs::exists(w.dir.file("bad_ids.jsonl.tmp")));

  auto p = run_ringtune("prepare " + w.dir.file("cfg.yaml"));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.out.find("(built: new)"), std::string::npos) << p.out;
  auto i = run_ringtune("inspect " + w.cache());
  ASSERT_EQ(i.exit_code, 0) << i.err;
  EXPECT_NE(i.out.find("2 samples"), std::string::npos) << i.out;

  write_file(w.dir.file("broken.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n");
  auto pb = run_ringtune("prepare " + w.dir.file("cfg.yaml") + " train_path=" + w.dir.file("broken.jsonl") +
                         " output_dir=" + w.dir.file("out2"));
  EXPECT_EQ(pb.exit_code, 2);
  EXPECT_NE(pb.err.find(w.dir.file("broken.jsonl") + ":1:"), std::string::npos) << pb.err;
  EXPECT_FALSE(fs::exists(w.dir.file("out2/prepared/train.h5")));
  EXPECT_FALSE(fs::exists(w.dir.file("out2/prepared/train.h5.tmp")));
}
