// Tokenizer tests: golden ids from the reference implementations (tests/golden/tokenizers/, made
// by gen_hf.mjs with the JS port of HF tokenizers and by gen_sp.py with sentencepiece's Python
// binding) for llama3-hf, mistral-hf and llama2-sp; decoding; special-token injection; segment
// encoding; offsets; load_tokenizer's special ids; the tokenizer.json components the fixtures do
// not exercise (small hand-written files); and the errors for unsupported or malformed files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/error.h"
#include "src/tokenizer/byte_level.h"
#include "src/tokenizer/hf_tokenizer.h"
#include "src/tokenizer/tokenizer.h"
#include "src/tokenizer/unicode_norm.h"
#include "test_util.h"

namespace {

using ringtune::Encoding;
using ringtune::InputError;
using ringtune::TextSegment;
using ringtune::Tokenizer;
using Ids = std::vector<int32_t>;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Helpers

std::string tokenizer_path(const std::string& name) {
  const std::string dir = ringtune_test::fixtures_dir() + "/tokenizers/" + name;
  return name == "llama2-sp" ? dir + "/tokenizer.model" : dir;
}

// Loaded once per test binary: llama3's tokenizer.json takes about a second to parse.
const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) slot = ringtune::load_tokenizer(tokenizer_path(name));
  return *slot;
}

nlohmann::json golden(const std::string& name) {
  const std::string path = ringtune_test::golden_dir() + "/tokenizers/" + name + ".json";
  return nlohmann::json::parse(ringtune_test::read_file(path));
}

// The cases of a golden file, kept alive for the whole run (golden(...).at("cases") in a
// range-for would dangle).
const nlohmann::json& golden_cases(const std::string& name) {
  static std::map<std::string, nlohmann::json> loaded;
  auto& slot = loaded[name];
  if (slot.is_null()) slot = golden(name).at("cases");
  return slot;
}

std::string show(const Ids& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

std::string quoted(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A tokenizer.json written into a temporary directory, loaded through load_tokenizer.
struct JsonTokenizer {
  ringtune_test::TempDir dir{"ringtune-tok"};
  std::unique_ptr<Tokenizer> tok;
  explicit JsonTokenizer(const nlohmann::json& j) {
    ringtune_test::write_file(dir.file("tokenizer.json"), j.dump());
    tok = ringtune::load_tokenizer(dir.path());
  }
};

// A small character-level BPE tokenizer.json: vocab from `tokens` (ids in order), merges as
// "a b" strings, or as [a, b] pairs when `pairs` is given (tokens with spaces need those).
nlohmann::json tiny_bpe(const std::vector<std::string>& tokens,
                        const std::vector<std::string>& string_merges,
                        const std::vector<std::pair<std::string, std::string>>& pairs = {}) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : string_merges) merges.push_back(m);
  for (const auto& [a, b] : pairs) merges.push_back(nlohmann::json::array({a, b}));
  return {{"version", "1.0"},
          {"added_tokens", nlohmann::json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"unk_token", nullptr}}}};
}

// The message of the InputError that load_tokenizer throws for a directory holding only
// `file_name` with `file_content` ("" if none).
std::string load_error(const std::string& file_content, const std::string& file_name =
                                                            "tokenizer.json") {
  ringtune_test::TempDir dir("ringtune-tok");
  ringtune_test::write_file(dir.file(file_name), file_content);
  try {
    ringtune::load_tokenizer(dir.path());
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Golden ids: every string, both modes, all three tokenizers.

void check_golden(const std::string& name) {
  const Tokenizer& tok = fixture(name);
  const nlohmann::json g = golden(name);
  const auto& cases = g.at("cases");
  ASSERT_GE(cases.size(), 160u) << name;
  size_t ok_allow = 0, ok_plain = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    const Ids want = c.at("ids"), want_plain = c.at("ids_plain");
    const Ids got = tok.encode(text, true), got_plain = tok.encode(text, false);
    if (got == want) ++ok_allow;
    else ADD_FAILURE() << name << " allow_special=true " << quoted(text) << "\n  got       "
                       << show(got) << "\n  reference " << show(want);
    if (got_plain == want_plain) ++ok_plain;
    else ADD_FAILURE() << name << " allow_special=false " << quoted(text) << "\n  got       "
                       << show(got_plain) << "\n  reference " << show(want_plain);
  }
  std::printf("[ golden   ] %s: %zu/%zu strings equal the reference with specials allowed, "
              "%zu/%zu as plain text (%s)\n",
              name.c_str(), ok_allow, cases.size(), ok_plain, cases.size(),
              g.at("reference").get<std::string>().c_str());
}

TEST(TokenizerGolden, Llama3Hf) { check_golden("llama3-hf"); }
TEST(TokenizerGolden, MistralHf) { check_golden("mistral-hf"); }
TEST(TokenizerGolden, Llama2Sp) { check_golden("llama2-sp"); }

// Variants of the fixtures with other components (the same edits as gen_hf.mjs makes).
TEST(TokenizerGolden, Variants) {
  const nlohmann::json metaspace = {{"type", "Metaspace"},
                                    {"replacement", "\xE2\x96\x81"},
                                    {"add_prefix_space", true},
                                    {"split", false}};
  auto edited = [&](const std::string& variant) {
    const std::string base = variant.substr(0, variant.find('+'));
    nlohmann::json j = nlohmann::json::parse(
        ringtune_test::read_file(tokenizer_path(base) + "/tokenizer.json"));
    if (variant == "llama3-hf+bytelevel_regex") {
      j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true},
                            {"trim_offsets", true}, {"use_regex", true}};
    } else {
      nlohmann::json m = metaspace;
      m["prepend_scheme"] = variant == "mistral-hf+metaspace_first" ? "first" : "always";
      j["normalizer"] = nullptr;
      j["pre_tokenizer"] = m;
      j["decoder"] = {{"type", "Sequence"},
                      {"decoders", {m, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
    }
    return std::make_unique<ringtune::HfTokenizer>(j, variant);
  };
  std::map<std::string, std::unique_ptr<ringtune::HfTokenizer>> toks;
  std::map<std::string, std::pair<size_t, size_t>> counts;  // variant -> (ids equal, decodes equal)
  for (const auto& c : golden_cases("variants")) {
    const std::string variant = c.at("variant"), text = c.at("text");
    auto& tok = toks[variant];
    if (!tok) tok = edited(variant);
    const Ids want = c.at("ids"), got = tok->encode(text, true);
    if (got == want) ++counts[variant].first;
    else ADD_FAILURE() << variant << " " << quoted(text) << "\n  got       " << show(got)
                       << "\n  reference " << show(want);
    const std::string decoded = tok->decode(want);
    if (decoded == c.at("decoded").get<std::string>()) ++counts[variant].second;
    else ADD_FAILURE() << variant << " decode " << quoted(text) << " got " << quoted(decoded);
  }
  EXPECT_EQ(toks.size(), 3u);
  for (const auto& [variant, n] : counts) {
    std::printf("[ golden   ] %s: %zu strings equal the reference, %zu decodes\n", variant.c_str(),
                n.first, n.second);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding: equal to the reference's decode, and decode(encode(x)) == x wherever the reference
// round-trips.

void check_decode(const std::string& name) {
  const Tokenizer& tok = fixture(name);
  const nlohmann::json g = golden(name);
  size_t same = 0, checked = 0, round_trips = 0;
  for (const auto& c : g.at("cases")) {
    const std::string text = c.at("text");
    for (const char* mode : {"", "_plain"}) {
      const std::string key = std::string("decoded") + mode;
      if (!c.contains(key)) continue;
      const Ids ids = c.at(std::string("ids") + mode);
      const std::string want = c.at(key);
      ++checked;
      const std::string got = tok.decode(ids);
      if (got == want) ++same;
      else ADD_FAILURE() << name << " decode " << show(ids) << "\n  got       " << quoted(got)
                         << "\n  reference " << quoted(want);
      if (want == text) {
        ++round_trips;
        EXPECT_EQ(tok.decode(tok.encode(text, *mode == '\0')), text) << name << " " << quoted(text);
      }
    }
  }
  std::printf("[ decode   ] %s: %zu/%zu decodes equal the reference; %zu round trips checked\n",
              name.c_str(), same, checked, round_trips);
}

TEST(TokenizerDecode, Llama3Hf) { check_decode("llama3-hf"); }
TEST(TokenizerDecode, MistralHf) { check_decode("mistral-hf"); }
TEST(TokenizerDecode, Llama2Sp) { check_decode("llama2-sp"); }

TEST(TokenizerDecode, SkipSpecial) {
  const Tokenizer& llama3 = fixture("llama3-hf");
  const Ids ids = llama3.encode("<|begin_of_text|>Hi<|eot_id|>", true);
  EXPECT_EQ(llama3.decode(ids), "<|begin_of_text|>Hi<|eot_id|>");
  EXPECT_EQ(llama3.decode(ids, true), "Hi");
  const Tokenizer& sp = fixture("llama2-sp");
  const Ids sp_ids = sp.encode("<s>Hi</s>", true);
  EXPECT_EQ(sp_ids.front(), 1);
  EXPECT_EQ(sp_ids.back(), 2);
  EXPECT_EQ(sp.decode(sp_ids), "<s>Hi</s>");
  EXPECT_EQ(sp.decode(sp_ids, true), "Hi");
}

// ---------------------------------------------------------------------------------------------
// Special-token injection: a spelling in text that does not allow specials is ordinary text.

// The reference's plain-text ids of `text` (its golden case).
Ids golden_plain(const std::string& name, const std::string& text) {
  for (const auto& c : golden_cases(name)) {
    if (c.at("text").get<std::string>() == text) return c.at("ids_plain");
  }
  ADD_FAILURE() << "no golden case " << quoted(text) << " for " << name;
  return {};
}

TEST(TokenizerInjection, Llama3EotId) {
  const Tokenizer& tok = fixture("llama3-hf");
  const Ids plain = tok.encode("<|eot_id|>", false);
  EXPECT_NE(plain, Ids{128009});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128009), 0);
  EXPECT_EQ(plain, golden_plain("llama3-hf", "<|eot_id|>"));
  EXPECT_EQ(tok.encode("<|eot_id|>", true), Ids{128009});
  EXPECT_EQ(tok.encode("<|begin_of_text|>hi", false),
            golden_plain("llama3-hf", "<|begin_of_text|>hi"));
}

TEST(TokenizerInjection, MistralEos) {
  const Tokenizer& tok = fixture("mistral-hf");
  const Ids plain = tok.encode("</s>", false);
  EXPECT_NE(plain, Ids{2});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(plain, golden_plain("mistral-hf", "</s>"));
  EXPECT_EQ(tok.encode("</s>", true), Ids{2});
  EXPECT_EQ(tok.encode("<s>", true), Ids{1});
}

TEST(TokenizerInjection, Llama2SpEos) {
  const Tokenizer& tok = fixture("llama2-sp");
  const Ids plain = tok.encode("</s>", false);
  EXPECT_NE(plain, Ids{2});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(plain, golden_plain("llama2-sp", "</s>"));
  EXPECT_EQ(tok.encode("</s>", true), Ids{2});
  EXPECT_EQ(tok.encode("<unk>", true), Ids{0});
}

// ---------------------------------------------------------------------------------------------
// Segments: specials only where allowed; text joins across segment boundaries.

TEST(TokenizerSegments, Llama3ChatTurn) {
  const Tokenizer& tok = fixture("llama3-hf");
  const std::vector<TextSegment> segments = {{"<|start_header_id|>", true},
                                             {"user", false},
                                             {"<|end_header_id|>\n\n", true},
                                             {"Hi <|eot_id|> there", false},
                                             {"<|eot_id|>", true}};
  const Encoding enc = tok.encode(segments);
  const Ids expected = concat({{128006}, tok.encode("user"), {128007},
                               tok.encode("\n\nHi <|eot_id|> there", false), {128009}});
  EXPECT_EQ(enc.ids, expected);
  EXPECT_EQ(std::count(enc.ids.begin(), enc.ids.end(), 128009), 1);
  // Without the injected spelling, the same as the joined string with specials allowed.
  const std::vector<TextSegment> clean = {{"<|start_header_id|>", true},
                                          {"user", false},
                                          {"<|end_header_id|>\n\n", true},
                                          {"Hi there", false},
                                          {"<|eot_id|>", true}};
  EXPECT_EQ(tok.encode(clean).ids,
            tok.encode("<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>", true));
}

TEST(TokenizerSegments, BoundariesDoNotChangeTokens) {
  for (const char* name : {"llama3-hf", "mistral-hf", "llama2-sp"}) {
    const Tokenizer& tok = fixture(name);
    const std::string text = "Hello world, tokenizers don't care where segments end.";
    for (size_t cut = 0; cut <= text.size(); cut += 7) {
      const std::string a = text.substr(0, cut), b = text.substr(cut);
      EXPECT_EQ(tok.encode({{a, false}, {b, false}}).ids, tok.encode(text)) << name << " " << cut;
      EXPECT_EQ(tok.encode({{a, true}, {b, true}}).ids, tok.encode(text, true))
          << name << " " << cut;
    }
    // A special spelled across an allowed and a plain segment is not matched.
    const Ids split = tok.encode({{"<|eot", true}, {"_id|></s>", false}}).ids;
    EXPECT_EQ(split, tok.encode("<|eot_id|></s>", false)) << name;
  }
}

TEST(TokenizerSegments, MistralAndLlama2Inst) {
  for (const char* name : {"mistral-hf", "llama2-sp"}) {
    const Tokenizer& tok = fixture(name);
    const std::vector<TextSegment> segments = {
        {"<s>[INST] ", true}, {"What is </s>?", false}, {" [/INST]", true}};
    const Ids expected = concat({{1}, tok.encode("[INST] What is </s>? [/INST]", false)});
    EXPECT_EQ(tok.encode(segments).ids, expected) << name;
    EXPECT_EQ(std::count(expected.begin(), expected.end(), 2), 0) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Offsets: one per token, non-decreasing, inside the text; for Llama 3 each token's bytes are
// exactly the text between its offset and the next one.

TEST(TokenizerOffsets, MonotoneAndInsideText) {
  for (const char* name : {"llama3-hf", "mistral-hf", "llama2-sp"}) {
    const Tokenizer& tok = fixture(name);
    for (const auto& c : golden_cases(name)) {
      const std::string text = c.at("text");
      const Encoding enc = tok.encode({{text, true}});
      ASSERT_EQ(enc.offsets.size(), enc.ids.size()) << name << " " << quoted(text);
      for (size_t i = 0; i < enc.offsets.size(); ++i) {
        EXPECT_GE(enc.offsets[i], 0) << name << " " << quoted(text);
        EXPECT_LT(enc.offsets[i], static_cast<int64_t>(text.size())) << name << " " << quoted(text);
        if (i > 0) {
          EXPECT_GE(enc.offsets[i], enc.offsets[i - 1]) << name << " " << quoted(text);
        }
        if (tok.is_special(enc.ids[i])) {
          const std::string piece = tok.id_to_piece(enc.ids[i]);
          EXPECT_EQ(text.compare(enc.offsets[i], piece.size(), piece), 0) << name;
        }
      }
    }
  }
  const Tokenizer& llama3 = fixture("llama3-hf");
  const auto& alphabet = ringtune::byte_level_alphabet();
  for (const auto& c : golden_cases("llama3-hf")) {
    const std::string text = c.at("text");
    const Encoding enc = llama3.encode({{text, true}});
    for (size_t i = 0; i < enc.ids.size(); ++i) {
      const int64_t end = i + 1 < enc.ids.size() ? enc.offsets[i + 1] : text.size();
      const std::string piece = llama3.id_to_piece(enc.ids[i]);
      std::string bytes = piece;
      if (!llama3.is_special(enc.ids[i])) {
        ASSERT_TRUE(alphabet.to_bytes(piece, &bytes)) << piece;
      }
      EXPECT_EQ(text.substr(enc.offsets[i], end - enc.offsets[i]), bytes) << quoted(text);
    }
  }
  // Mistral's prepended "▁" points at the text that follows.
  const Encoding m = fixture("mistral-hf").encode({{"</s>hi", true}});
  EXPECT_EQ(m.offsets, (std::vector<int64_t>{0, 4}));
}

// ---------------------------------------------------------------------------------------------
// Special ids and load_tokenizer's sources for them.

TEST(TokenizerSpecialIds, Fixtures) {
  const auto& l3 = fixture("llama3-hf").special_ids();
  EXPECT_EQ(l3.bos, 128000);
  EXPECT_EQ(l3.eos, 128001);
  EXPECT_EQ(l3.eos_ids, Ids{128001});
  EXPECT_EQ(l3.pad, -1);
  const auto& m = fixture("mistral-hf").special_ids();
  EXPECT_EQ(m.bos, 1);
  EXPECT_EQ(m.eos, 2);
  EXPECT_EQ(m.unk, 0);
  EXPECT_EQ(m.pad, -1);
  const auto& sp = fixture("llama2-sp").special_ids();
  EXPECT_EQ(sp.bos, 1);
  EXPECT_EQ(sp.eos, 2);
  EXPECT_EQ(sp.unk, 0);
  EXPECT_EQ(sp.pad, -1);
  EXPECT_EQ(fixture("llama3-hf").vocab_size(), 128256);
  EXPECT_EQ(fixture("mistral-hf").vocab_size(), 32000);
  EXPECT_EQ(fixture("llama2-sp").vocab_size(), 32000);
  EXPECT_EQ(fixture("llama3-hf").kind(), "hf-bpe(byte-level)");
  EXPECT_EQ(fixture("mistral-hf").kind(), "hf-bpe");
  EXPECT_EQ(fixture("llama2-sp").kind(), "sentencepiece");
  EXPECT_EQ(fixture("llama3-hf").token_to_id("<|eot_id|>"), 128009);
  EXPECT_EQ(fixture("llama3-hf").token_to_id("\xC4\xA0the"), 279);  // "Ġthe"
  EXPECT_EQ(fixture("llama3-hf").id_to_piece(279), "\xC4\xA0the");
  EXPECT_FALSE(fixture("llama3-hf").token_to_id("no such token").has_value());
  EXPECT_FALSE(fixture("llama2-sp").token_to_id("no such token").has_value());
  EXPECT_EQ(fixture("llama2-sp").token_to_id("<unk>"), 0);
}

TEST(TokenizerSpecialIds, ConfigJsonEosListAndObjectForm) {
  ringtune_test::TempDir dir("ringtune-tok");
  fs::create_symlink(fs::absolute(tokenizer_path("llama3-hf") + "/tokenizer.json"),
                     dir.file("tokenizer.json"));
  ringtune_test::write_file(
      dir.file("tokenizer_config.json"),
      R"({"bos_token": {"content": "<|begin_of_text|>", "__type": "AddedToken"},
          "eos_token": "<|eot_id|>", "pad_token": null})");
  ringtune_test::write_file(
      dir.file("config.json"),
      R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
  auto tok = ringtune::load_tokenizer(dir.path());
  EXPECT_EQ(tok->special_ids().bos, 128000);
  EXPECT_EQ(tok->special_ids().eos, 128009);
  EXPECT_EQ(tok->special_ids().eos_ids, (Ids{128009, 128001, 128008}));
  EXPECT_EQ(tok->special_ids().pad, -1);

  // Without tokenizer_config.json, config.json decides; its first eos is eos.
  fs::remove(dir.file("tokenizer_config.json"));
  tok = ringtune::load_tokenizer(dir.path());
  EXPECT_EQ(tok->special_ids().eos, 128001);
  EXPECT_EQ(tok->special_ids().eos_ids, (Ids{128001, 128008, 128009}));

  // generation_config.json's eos_token_id list adds its ids (generate stops at any of them).
  ringtune_test::write_file(dir.file("config.json"), R"({"eos_token_id": 128001})");
  ringtune_test::write_file(dir.file("generation_config.json"),
                            R"({"eos_token_id": [128001, 128009, 128008]})");
  tok = ringtune::load_tokenizer(dir.path());
  EXPECT_EQ(tok->special_ids().eos, 128001);
  EXPECT_EQ(tok->special_ids().eos_ids, (Ids{128001, 128009, 128008}));
  ringtune_test::write_file(dir.file("generation_config.json"), R"({"eos_token_id": "x"})");
  EXPECT_THROW(ringtune::load_tokenizer(dir.path()), ringtune::InputError);
  fs::remove(dir.file("generation_config.json"));

  // Without either, the tokenizer's own pieces.
  fs::remove(dir.file("config.json"));
  tok = ringtune::load_tokenizer(dir.path());
  EXPECT_EQ(tok->special_ids().bos, 128000);
  EXPECT_EQ(tok->special_ids().eos, 128001);
}

TEST(TokenizerSpecialIds, AddedTokensDecoderOnSentencePiece) {
  ringtune_test::TempDir dir("ringtune-tok");
  fs::create_symlink(fs::absolute(tokenizer_path("llama2-sp")), dir.file("tokenizer.model"));
  ringtune_test::write_file(dir.file("tokenizer_config.json"), R"({
    "added_tokens_decoder": {
      "1": {"content": "<s>", "special": true},
      "32000": {"content": "<pad>", "special": true},
      "32001": {"content": "<|im_end|>", "special": true}},
    "pad_token": "<pad>", "eos_token": "<|im_end|>"})");
  auto tok = ringtune::load_tokenizer(dir.path());
  EXPECT_EQ(tok->vocab_size(), 32002);
  EXPECT_EQ(tok->special_ids().pad, 32000);
  EXPECT_EQ(tok->special_ids().eos, 32001);
  EXPECT_EQ(tok->encode("hi<|im_end|>", true), concat({tok->encode("hi"), {32001}}));
  const Ids plain = tok->encode("hi<|im_end|>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 32001), 0);
  EXPECT_EQ(tok->decode({32001}), "<|im_end|>");
  EXPECT_TRUE(tok->is_special(32001));

  ringtune_test::write_file(dir.file("tokenizer_config.json"),
                            R"({"added_tokens_decoder": {"5": {"content": "<x>"}}})");
  try {
    ringtune::load_tokenizer(dir.path());
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("which is the model's piece"), std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json components the fixtures do not exercise.

TEST(TokenizerComponents, MergesAsPairsEqualStrings) {
  nlohmann::json j = nlohmann::json::parse(
      ringtune_test::read_file(tokenizer_path("llama3-hf") + "/tokenizer.json"));
  for (auto& m : j["model"]["merges"]) {
    const std::string s = m;
    const size_t sp = s.find(' ');
    m = nlohmann::json::array({s.substr(0, sp), s.substr(sp + 1)});
  }
  const ringtune::HfTokenizer pairs(j, "pairs.json");
  const Tokenizer& strings = fixture("llama3-hf");
  for (const auto& c : golden_cases("llama3-hf")) {
    const std::string text = c.at("text");
    EXPECT_EQ(pairs.encode(text, true), strings.encode(text, true)) << quoted(text);
  }
}

TEST(TokenizerComponents, IgnoreMerges) {
  // "abc" is in the vocabulary but no merge makes it.
  nlohmann::json j = tiny_bpe({"a", "b", "c", "bc", "abc"}, {"b c"});
  EXPECT_EQ(JsonTokenizer(j).tok->encode("abc"), (Ids{0, 3}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(JsonTokenizer(j).tok->encode("abc"), (Ids{4}));
}

TEST(TokenizerComponents, UnkAndFuseUnk) {
  nlohmann::json j = tiny_bpe({"<unk>", "a"}, {});
  j["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(JsonTokenizer(j).tok->encode("axxa"), (Ids{1, 0, 0, 1}));
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(JsonTokenizer(j).tok->encode("axxa"), (Ids{1, 0, 1}));
  j["model"]["unk_token"] = nullptr;  // no unk: unknown characters are dropped
  EXPECT_EQ(JsonTokenizer(j).tok->encode("axxa"), (Ids{1, 1}));
}

TEST(TokenizerComponents, ByteFallback) {
  std::vector<std::string> tokens = {"<unk>", "a"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
  }
  nlohmann::json j = tiny_bpe(tokens, {});
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  JsonTokenizer t(j);
  const Ids ids = t.tok->encode("a\xC3\xA9");  // a é
  EXPECT_EQ(ids, (Ids{1, 2 + 0xC3, 2 + 0xA9}));
  EXPECT_EQ(t.tok->decode(ids), "a\xC3\xA9");
  EXPECT_EQ(t.tok->decode({2 + 0xC3}), "\xEF\xBF\xBD");  // a lone lead byte decodes to U+FFFD
}

TEST(TokenizerComponents, SplitBehaviours) {
  // Merges that would join across a space show where the pieces are cut.
  nlohmann::json j = tiny_bpe({"a", "b", " ", "a ", " b"}, {}, {{"a", " "}, {" ", "b"}});
  auto with_split = [&](const char* behavior, bool invert) {
    nlohmann::json k = j;
    k["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"String", " "}}},
                          {"behavior", behavior},
                          {"invert", invert}};
    return JsonTokenizer(k).tok->encode("a b");
  };
  EXPECT_EQ(JsonTokenizer(j).tok->encode("a b"), (Ids{3, 1}));  // one piece: "a " merges first
  EXPECT_EQ(with_split("Isolated", false), (Ids{0, 2, 1}));
  EXPECT_EQ(with_split("Removed", false), (Ids{0, 1}));
  EXPECT_EQ(with_split("MergedWithPrevious", false), (Ids{3, 1}));
  EXPECT_EQ(with_split("MergedWithNext", false), (Ids{0, 4}));
  EXPECT_EQ(with_split("Contiguous", false), (Ids{0, 2, 1}));
  EXPECT_EQ(with_split("Removed", true), (Ids{2}));  // invert: the matches are what stays
}

TEST(TokenizerComponents, MetaspaceMatchesMistralNormalizer) {
  nlohmann::json j = nlohmann::json::parse(
      ringtune_test::read_file(tokenizer_path("mistral-hf") + "/tokenizer.json"));
  j["normalizer"] = nullptr;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                     {"prepend_scheme", "always"}, {"split", false}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}}}}};
  const Tokenizer& mistral = fixture("mistral-hf");
  for (const bool split : {false, true}) {
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                          {"prepend_scheme", "always"}, {"split", split}};
    const ringtune::HfTokenizer meta(j, "metaspace.json");
    size_t compared = 0;
    for (const auto& c : golden_cases("mistral-hf")) {
      const std::string text = c.at("text");
      // Prepend adds "▁" even before a leading space; Metaspace does not. With split, a run of
      // spaces is cut into single "▁" pieces, which the one-piece normalizer path does not do.
      if (text.empty() || text[0] == ' ' || text.rfind("\xE2\x96\x81", 0) == 0) continue;
      if (split && text.find("  ") != std::string::npos) continue;
      ++compared;
      EXPECT_EQ(meta.encode(text, false), mistral.encode(text, false)) << split << quoted(text);
    }
    EXPECT_GT(compared, 140u);
    EXPECT_EQ(meta.decode(meta.encode("Hello world")), "Hello world");
  }
  // "first": only the piece at the very start of the input gets the "▁".
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                        {"prepend_scheme", "first"}, {"split", true}};
  const ringtune::HfTokenizer first(j, "first.json");
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  const ringtune::HfTokenizer never(j, "never.json");
  EXPECT_EQ(first.encode("hello", true), mistral.encode("hello", true));
  EXPECT_NE(never.encode("hello", true), mistral.encode("hello", true));
  EXPECT_EQ(first.encode("<s>hello", true), concat({{1}, never.encode("hello", true)}));
  EXPECT_EQ(mistral.encode("<s>hello", true), concat({{1}, mistral.encode("hello", true)}));
}

TEST(TokenizerComponents, AddedTokensStripAndNonSpecial) {
  nlohmann::json j = tiny_bpe({"a", "b", " ", "x"}, {});
  j["added_tokens"] = {{{"id", 4}, {"content", "<sep>"}, {"special", true}, {"lstrip", true},
                        {"rstrip", true}},
                       {{"id", 5}, {"content", "xx"}, {"special", false}}};
  JsonTokenizer t(j);
  EXPECT_EQ(t.tok->encode("a <sep> b", true), (Ids{0, 4, 1}));
  // Not matched: plain characters ('<', 's', ... are not in the vocabulary and are dropped).
  EXPECT_EQ(t.tok->encode("a <sep> b", false), (Ids{0, 2, 2, 1}));
  // Non-special added tokens match everywhere, as in the reference.
  EXPECT_EQ(t.tok->encode("axxxb", false), (Ids{0, 5, 3, 1}));
  EXPECT_FALSE(t.tok->is_special(5));
  EXPECT_TRUE(t.tok->is_special(4));
  EXPECT_EQ(t.tok->vocab_size(), 6);
  // Ids must run without gaps: added tokens at 10 and 11 over a vocabulary of 4 leave 4..9 empty.
  j["added_tokens"][0]["id"] = 10;
  j["added_tokens"][1]["id"] = 11;
  try {
    JsonTokenizer gap(j);
    ADD_FAILURE() << "a tokenizer with an id gap was accepted";
  } catch (const ringtune::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no token has id 4 (ids of model.vocab and added_tokens must run from 0 to 11 "
                                         "without gaps)"),
              std::string::npos)
        << e.what();
  }
}

TEST(TokenizerComponents, UnicodeNormalizationMatchesReference) {
  const nlohmann::json g = golden("unicode_norm");
  size_t ok = 0, total = 0;
  for (const auto& c : g.at("cases")) {
    const std::string text = c.at("text");
    for (const bool compose : {true, false}) {
      ringtune::NormalizedText in;
      in.text = text;
      in.end = static_cast<int64_t>(text.size());
      const ringtune::NormalizedText out = ringtune::unicode_normalize(in, compose);
      const std::string want = c.at(compose ? "nfc" : "nfd");
      ++total;
      if (out.text == want) ++ok;
      else ADD_FAILURE() << (compose ? "NFC " : "NFD ") << quoted(text) << " got "
                         << quoted(out.text) << " reference " << quoted(want);
    }
  }
  std::printf("[ unicode  ] %zu/%zu NFC/NFD forms equal String.prototype.normalize\n", ok, total);
}

TEST(TokenizerComponents, ConcurrentEncodeIsConsistent) {
  const Tokenizer& tok = fixture("llama3-hf");
  const nlohmann::json& cases = golden_cases("llama3-hf");
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (const auto& c : cases) {
          if (tok.encode(c.at("text").get<std::string>(), true) != c.at("ids").get<Ids>()) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---------------------------------------------------------------------------------------------
// Errors: unsupported components and malformed files name the file and the problem.

TEST(TokenizerErrors, UnsupportedComponents) {
  const nlohmann::json base = tiny_bpe({"a"}, {});
  auto message = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = base;
    j[key] = value;
    return load_error(j.dump());
  };
  std::string m = message("normalizer", {{"type", "NFKC"}});
  EXPECT_NE(m.find("tokenizer.json: unsupported normalizer type \"NFKC\""), std::string::npos) << m;
  m = message("normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}});
  EXPECT_NE(m.find("tokenizer.json: unsupported normalizer type \"Lowercase\""), std::string::npos)
      << m;
  m = message("pre_tokenizer", {{"type", "Whitespace"}});
  EXPECT_NE(m.find("tokenizer.json: unsupported pre_tokenizer type \"Whitespace\""),
            std::string::npos)
      << m;
  m = message("decoder", {{"type", "WordPiece"}});
  EXPECT_NE(m.find("tokenizer.json: unsupported decoder type \"WordPiece\""), std::string::npos)
      << m;
  m = message("model", {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}});
  EXPECT_NE(m.find("tokenizer.json: unsupported model type \"Unigram\""), std::string::npos) << m;
  m = message("pre_tokenizer", {{"type", "Sequence"},
                                {"pretokenizers",
                                 {{{"type", "ByteLevel"}, {"use_regex", false}},
                                  {{"type", "Split"}, {"pattern", {{"String", " "}}}}}}});
  EXPECT_NE(m.find("ByteLevel must come last"), std::string::npos) << m;
  m = message("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}});
  EXPECT_NE(m.find("tokenizer.json: pre_tokenizer Split: bad regex"), std::string::npos) << m;
}

TEST(TokenizerErrors, MalformedFiles) {
  std::string m = load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": ");
  EXPECT_NE(m.find("tokenizer.json: invalid JSON"), std::string::npos) << m;
  m = load_error("{\"version\": \"1.0\"}");
  EXPECT_NE(m.find("tokenizer.json: missing \"model\""), std::string::npos) << m;
  m = load_error(tiny_bpe({"a", "b"}, {"a c"}).dump());
  EXPECT_NE(m.find("token \"c\" is not in the vocab"), std::string::npos) << m;
  m = load_error(tiny_bpe({"a", "b"}, {"a b c"}).dump());
  EXPECT_NE(m.find("merge 0"), std::string::npos) << m;
  nlohmann::json j = tiny_bpe({"a"}, {});
  j["model"]["vocab"]["b"] = "one";
  m = load_error(j.dump());
  EXPECT_NE(m.find("model BPE: vocab entry \"b\" must have an integer id"), std::string::npos) << m;
  j = tiny_bpe({"a"}, {});
  j["added_tokens"] = {{{"content", 5}}};
  m = load_error(j.dump());
  EXPECT_NE(m.find("tokenizer.json: added_tokens: \"content\" must be a string"), std::string::npos)
      << m;
  m = load_error("not a sentencepiece model", "tokenizer.model");
  EXPECT_NE(m.find("tokenizer.model"), std::string::npos) << m;
  EXPECT_THROW(ringtune::load_tokenizer("/nonexistent/tokenizer.json"), InputError);
  ringtune_test::TempDir empty("ringtune-tok");
  EXPECT_THROW(ringtune::load_tokenizer(empty.path()), InputError);

  // tokenizer_config.json naming a token the vocabulary lacks.
  ringtune_test::TempDir dir("ringtune-tok");
  ringtune_test::write_file(dir.file("tokenizer.json"), tiny_bpe({"a"}, {}).dump());
  ringtune_test::write_file(dir.file("tokenizer_config.json"), R"({"bos_token": "<s>"})");
  try {
    ringtune::load_tokenizer(dir.path());
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: bos_token \"<s>\" is not in"),
              std::string::npos)
        << e.what();
  }
}

TEST(TokenizerErrors, InvalidUtf8Text) {
  EXPECT_THROW(fixture("llama3-hf").encode("bad \xFF byte"), InputError);
}

}  // namespace
