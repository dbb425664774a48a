// safetensors reader/writer and Hugging Face model directories: round trips, sharded loading, and
// malformed inputs each rejected with its own message (never a crash or out-of-bounds read).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>

#include "model/llama.h"
#include "src/error.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

// Raw file: 8-byte length, header text, data bytes.
std::string raw_file(const std::string& header, const std::string& data, int64_t claimed = -1) {
  std::string out(8, '\0');
  uint64_t n = claimed >= 0 ? static_cast<uint64_t>(claimed) : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string open_error(const std::string& path) {
  try {
    SafeTensorsFile f(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(accepted)";
}

// A copy of the stories260k model directory that a test may edit.
struct ModelCopy {
  TempDir dir{"ringtune-model"};
  ModelCopy() {
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(stories_dir() + "/" + f, dir.file(f));
  }
  nlohmann::json config() const { return nlohmann::json::parse(read_file(dir.file("config.json"))); }
  void set_config(const nlohmann::json& j) const { write_file(dir.file("config.json"), j.dump(2)); }
  std::vector<std::pair<std::string, torch::Tensor>> tensors() const {
    SafeTensorsFile f(dir.file("model.safetensors"));
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& [name, info] : f.tensors()) out.emplace_back(name, f.load(name));
    return out;
  }
};

std::string load_error(const std::string& dir) {
  try {
    load_hf_model(dir);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(SafeTensors, RoundTripAllDtypes) {
  TempDir tmp;
  torch::manual_seed(1);
  std::vector<std::pair<std::string, torch::Tensor>> ts = {
      {"f32", torch::randn({3, 5})},
      {"f16", torch::randn({4}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2, 2}).to(torch::kBFloat16)},
      {"i64", torch::arange(10)},
      {"i32", torch::arange(6, torch::kInt32).reshape({2, 3})},
      {"u8", torch::arange(5, torch::kUInt8)},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
      {"noncontig", torch::randn({4, 6}).t()},
  };
  write_safetensors(tmp.file("a.safetensors"), ts, {{"format", "pt"}});
  SafeTensorsFile f(tmp.file("a.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), ts.size());
  for (const auto& [name, t] : ts) {
    auto back = f.load(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back, t)) << name;
  }
  EXPECT_EQ(f.info("f16").dtype, "F16");
  EXPECT_EQ(f.info("bf16").dtype, "BF16");
  // Conversion on load: bf16 -> f32 exactly.
  EXPECT_TRUE(torch::equal(f.load("bf16", static_cast<int>(torch::kFloat32)), ts[2].second.to(torch::kFloat32)));
  // The data section starts 8-byte aligned.
  const std::string raw = read_file(tmp.file("a.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(SafeTensors, ReadsTheFixtureWrittenByPython) {
  SafeTensorsFile f(stories_dir() + "/model.safetensors");
  EXPECT_EQ(f.tensors().size(), 47u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.info("model.embed_tokens.weight").shape, (std::vector<int64_t>{512, 64}));
}

TEST(SafeTensors, MalformedFilesAreRejectedWithTheirOwnMessage) {
  TempDir tmp;
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  struct Case {
    std::string name, content, expected;
  };
  const std::vector<Case> cases = {
      {"short", std::string("abc"), "truncated: 3 bytes, shorter than the 8-byte header length"},
      {"header_past_end", raw_file("{}", "", 4096), "truncated: header claims 4096 bytes"},
      {"huge_header", raw_file("{}", "", 1ull << 40), "exceeds the 100 MiB limit"},
      {"bad_json", raw_file("{\"t\": [1, 2", ""), "bad header JSON"},
      {"not_object", raw_file("[1,2,3]", ""), "bad header: not a JSON object"},
      {"unknown_dtype", raw_file(R"({"t":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", "xx"),
       "tensor \"t\": unknown dtype \"F8\""},
      {"out_of_bounds", raw_file("{" + ok_entry + "}", "1234"),
       "tensor \"t\": data is not within the file bounds"},
      {"size_mismatch", raw_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"),
       "tensor \"t\": byte size 8 does not match dtype F32 x shape (12 bytes)"},
      {"overlap", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 'x')),
       "tensors \"a\" and \"b\" have overlapping data_offsets"},
      {"begin_after_end", raw_file(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", "1234"),
       "tensor \"t\": data_offsets begin > end"},
      {"negative_shape", raw_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "12345678"),
       "tensor \"t\": shape entries must be non-negative integers"},
      {"missing_offsets", raw_file(R"({"t":{"dtype":"F32","shape":[2]}})", "12345678"),
       "tensor \"t\": data_offsets must be [begin, end]"},
      {"bad_metadata", raw_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__.k is not a string"},
  };
  for (const auto& c : cases) {
    const std::string path = tmp.file(c.name + ".safetensors");
    write_file(path, c.content);
    const std::string err = open_error(path);
    EXPECT_NE(err.find(path + ": "), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find(c.expected), std::string::npos) << c.name << ": got " << err;
  }
  EXPECT_NE(open_error(tmp.file("absent.safetensors")).find("cannot open"), std::string::npos);
}

TEST(SafeTensors, ShardedIndexLoadsLikeTheSingleFile) {
  ModelCopy m;
  auto ts = m.tensors();
  fs::remove(m.dir.file("model.safetensors"));
  std::vector<std::pair<std::string, torch::Tensor>> a(ts.begin(), ts.begin() + 20), b(ts.begin() + 20, ts.end());
  write_safetensors(m.dir.file("model-00001-of-00002.safetensors"), a);
  write_safetensors(m.dir.file("model-00002-of-00002.safetensors"), b);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [n, t] : a) index["weight_map"][n] = "model-00001-of-00002.safetensors";
  for (const auto& [n, t] : b) index["weight_map"][n] = "model-00002-of-00002.safetensors";
  write_file(m.dir.file("model.safetensors.index.json"), index.dump());
  auto sharded = load_hf_model(m.dir.path());
  auto single = load_hf_model(stories_dir());
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, 512, {1, 16});
  EXPECT_TRUE(torch::equal(sharded->forward(tokens), single->forward(tokens)));
  EXPECT_EQ(hf_weight_files(m.dir.path()).size(), 2u);

  // A shard named in the index but absent.
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_file(m.dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_NE(load_error(m.dir.path()).find("shard model-00003-of-00002.safetensors does not exist"), std::string::npos);
  // A path escaping the directory.
  index["weight_map"]["model.norm.weight"] = "../model.safetensors";
  write_file(m.dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_NE(load_error(m.dir.path()).find("names a path outside the directory"), std::string::npos);
}

TEST(SafeTensors, BadModelDirectoriesNameTheProblem) {
  auto with_tensors = [](const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
    auto m = std::make_unique<ModelCopy>();
    auto ts = m->tensors();
    edit(ts);
    write_safetensors(m->dir.file("model.safetensors"), ts);
    return m;
  };
  {
    auto m = with_tensors([](auto& ts) {
      ts.erase(std::remove_if(ts.begin(), ts.end(), [](auto& p) { return p.first == "model.norm.weight"; }), ts.end());
    });
    EXPECT_NE(load_error(m->dir.path()).find("missing tensor \"model.norm.weight\""), std::string::npos);
  }
  {
    auto m = with_tensors([](auto& ts) {
      for (auto& p : ts)
        if (p.first == "model.layers.0.self_attn.k_proj.weight") p.second = torch::zeros({64, 64});
    });
    EXPECT_NE(load_error(m->dir.path()).find("tensor \"model.layers.0.self_attn.k_proj.weight\" has shape [64, 64], expected [32, 64]"),
              std::string::npos) << load_error(m->dir.path());
  }
  {
    auto m = with_tensors([](auto& ts) { ts.emplace_back("model.layers.9.mlp.up_proj.weight", torch::zeros({2})); });
    EXPECT_NE(load_error(m->dir.path()).find("unexpected tensor \"model.layers.9.mlp.up_proj.weight\""), std::string::npos);
  }
  {
    auto m = with_tensors([](auto& ts) {
      for (auto& p : ts)
        if (p.first == "model.norm.weight") p.second = torch::zeros({64}, torch::kInt64);
    });
    EXPECT_NE(load_error(m->dir.path()).find("tensor \"model.norm.weight\" has dtype I64, expected a floating type"), std::string::npos);
  }
  {  // bf16 weights load, converted to float32
    auto m = with_tensors([](auto& ts) {
      for (auto& p : ts) p.second = p.second.to(torch::kBFloat16);
    });
    auto model = load_hf_model(m->dir.path());
    EXPECT_EQ(model->model->norm->weight.scalar_type(), torch::kFloat32);
  }
  auto config_error = [](const std::function<void(nlohmann::json&)>& edit) {
    ModelCopy m;
    auto j = m.config();
    edit(j);
    m.set_config(j);
    return load_error(m.dir.path());
  };
  EXPECT_NE(config_error([](auto& j) { j["model_type"] = "gpt2"; }).find("model_type \"gpt2\" is not supported"), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["num_key_value_heads"] = 3; }).find("num_key_value_heads = 3: must divide num_attention_heads (8)"), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["hidden_size"] = "64"; }).find("key \"hidden_size\": expected an integer, got \"64\""), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j.erase("vocab_size"); }).find("missing required key \"vocab_size\""), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["rms_norm_eps"] = -1; }).find("rms_norm_eps = -1"), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2}}; }).find("rope_scaling.type = \"yarn\""), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["hidden_act"] = "gelu"; }).find("hidden_act \"gelu\" is not supported"), std::string::npos);
  EXPECT_NE(config_error([](auto& j) { j["vocab_size"] = 1000; }).find("has shape [512, 64], expected [1000, 64]"), std::string::npos);
  {
    ModelCopy m;
    write_file(m.dir.file("config.json"), "{\"model_type\": \"llama\",");
    EXPECT_NE(load_error(m.dir.path()).find("config.json: invalid JSON"), std::string::npos);
    fs::remove(m.dir.file("model.safetensors"));
    m.set_config(nlohmann::json::parse(read_file(stories_dir() + "/config.json")));
    EXPECT_NE(load_error(m.dir.path()).find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
  }
  {  // A truncated weight file.
    ModelCopy m;
    const std::string raw = read_file(m.dir.file("model.safetensors"));
    write_file(m.dir.file("model.safetensors"), raw.substr(0, raw.size() / 2));
    EXPECT_NE(load_error(m.dir.path()).find("data is not within the file bounds"), std::string::npos);
  }
}
