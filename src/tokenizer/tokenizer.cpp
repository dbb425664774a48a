// load_tokenizer: picks the tokenizer file of a path (file or model directory), builds the
// SentencePiece or tokenizer.json tokenizer, adds tokenizer_config.json's added_tokens_decoder
// and resolves the bos/eos/pad/unk ids.
//
// Where each special id comes from, first match wins:
//   1. tokenizer_config.json `<role>_token` (a string or {"content": ...}; null means none);
//   2. config.json `<role>_token_id` (bos, eos, pad; an integer or a list, whose first is taken);
//   3. the tokenizer itself: the SentencePiece model's ids, the BPE model's unk_token, or the
//      first of a few well-known pieces it has (<|begin_of_text|>, <s>, ...).
// eos_ids holds eos and every id that config.json or generation_config.json lists as
// eos_token_id (generation stops at any of them, as transformers' generate does).
#include "src/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/error.h"
#include "src/tokenizer/hf_tokenizer.h"
#include "src/tokenizer/sentencepiece_tokenizer.h"

namespace ringtune {

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Files

std::optional<nlohmann::json> read_json_if_present(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    nlohmann::json j = nlohmann::json::parse(buf.str());
    if (!j.is_object()) throw InputError(path.string() + ": expected a JSON object");
    return j;
  } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers beyond double's range
    throw InputError(path.string() + ": invalid JSON: " + e.what());
  }
}

bool looks_like_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c)) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return c == '{';
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Added tokens from tokenizer_config.json

template <class Tok>
void add_config_tokens(Tok& tok, const nlohmann::json& config, const std::string& config_path) {
  const auto it = config.find("added_tokens_decoder");
  if (it == config.end() || it->is_null()) return;
  if (!it->is_object()) throw InputError(config_path + ": added_tokens_decoder must be an object");
  for (auto e = it->begin(); e != it->end(); ++e) {
    const std::string where = config_path + ": added_tokens_decoder \"" + e.key() + "\"";
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(e.key(), &used);
      if (used != e.key().size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id > (1 << 24)) throw InputError(where + ": the key must be a token id");
    const auto& v = e.value();
    if (!v.is_object() || !v.contains("content") || !v["content"].is_string()) {
      throw InputError(where + ": needs a \"content\" string");
    }
    auto flag = [&](const char* key, bool fallback) {
      const auto f = v.find(key);
      return f != v.end() && f->is_boolean() ? f->template get<bool>() : fallback;
    };
    AddedToken t;
    t.content = v["content"].get<std::string>();
    t.id = static_cast<int32_t>(id);
    t.special = flag("special", false);
    t.lstrip = flag("lstrip", false);
    t.rstrip = flag("rstrip", false);
    t.single_word = flag("single_word", false);
    t.normalized = flag("normalized", !t.special);
    const auto known = tok.token_to_id(t.content);
    if (known && *known == t.id && (tok.is_special(t.id) || !t.special)) continue;  // nothing new
    if (known && *known != t.id && tok.is_special(*known)) {
      throw InputError(where + ": \"" + t.content + "\" is already token " +
                       std::to_string(*known));
    }
    tok.add_token(t);
  }
}

// ---------------------------------------------------------------------------------------------
// Special ids

// The value of tokenizer_config.json's `key`: absent (nullopt), null (""), or the content.
std::optional<std::string> config_token(const nlohmann::json* config, const char* key,
                                        const std::string& config_path) {
  if (config == nullptr) return std::nullopt;
  const auto it = config->find(key);
  if (it == config->end()) return std::nullopt;
  if (it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  throw InputError(config_path + ": " + key + " must be a string or {\"content\": ...}");
}

// config.json's `key` as a list of ids (an integer gives one).
std::vector<int32_t> config_ids(const nlohmann::json* config, const char* key,
                                const std::string& config_path, int32_t vocab_size) {
  std::vector<int32_t> ids;
  if (config == nullptr) return ids;
  const auto it = config->find(key);
  if (it == config->end() || it->is_null()) return ids;
  auto take = [&](const nlohmann::json& v) {
    if (!v.is_number_integer()) {
      throw InputError(config_path + ": " + key + " must be an integer or a list of integers");
    }
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      throw InputError(config_path + ": " + key + " " + std::to_string(id) +
                       " is outside the tokenizer's vocabulary of " + std::to_string(vocab_size));
    }
    ids.push_back(static_cast<int32_t>(id));
  };
  if (it->is_array()) {
    for (const auto& v : *it) take(v);
  } else {
    take(*it);
  }
  return ids;
}

int32_t first_known_piece(const Tokenizer& tok, std::initializer_list<const char*> pieces) {
  for (const char* p : pieces) {
    if (const auto id = tok.token_to_id(p)) return *id;
  }
  return -1;
}

SpecialTokenIds resolve_special_ids(const Tokenizer& tok, SpecialTokenIds defaults,
                                    const nlohmann::json* tok_config,
                                    const std::string& tok_config_path,
                                    const nlohmann::json* model_config,
                                    const std::string& model_config_path,
                                    const nlohmann::json* gen_config,
                                    const std::string& gen_config_path) {
  SpecialTokenIds ids;
  const int32_t vocab = tok.vocab_size();
  auto resolve = [&](const char* role, int32_t fallback, std::vector<int32_t>* listed) -> int32_t {
    const std::string token_key = std::string(role) + "_token";
    const std::string id_key = std::string(role) + "_token_id";
    std::vector<int32_t> from_config;
    if (std::string(role) != "unk") {
      from_config = config_ids(model_config, id_key.c_str(), model_config_path, vocab);
    }
    if (listed) *listed = from_config;
    if (const auto content = config_token(tok_config, token_key.c_str(), tok_config_path)) {
      if (content->empty()) return -1;
      const auto id = tok.token_to_id(*content);
      if (!id) {
        throw InputError(tok_config_path + ": " + token_key + " \"" + *content +
                         "\" is not in the tokenizer's vocabulary");
      }
      return *id;
    }
    if (!from_config.empty()) return from_config.front();
    return fallback;
  };
  ids.bos = resolve("bos",
                    defaults.bos >= 0 ? defaults.bos
                                      : first_known_piece(tok, {"<|begin_of_text|>", "<s>", "<bos>",
                                                                "<|startoftext|>"}),
                    nullptr);
  std::vector<int32_t> eos_listed;
  ids.eos = resolve("eos",
                    defaults.eos >= 0 ? defaults.eos
                                      : first_known_piece(tok, {"<|end_of_text|>", "</s>", "<eos>",
                                                                "<|endoftext|>"}),
                    &eos_listed);
  ids.pad = resolve("pad", defaults.pad >= 0 ? defaults.pad : first_known_piece(tok, {"<pad>"}),
                    nullptr);
  ids.unk = resolve("unk", defaults.unk >= 0 ? defaults.unk : first_known_piece(tok, {"<unk>"}),
                    nullptr);
  if (ids.eos >= 0) {
    ids.eos_ids.push_back(ids.eos);
    const auto gen_listed = config_ids(gen_config, "eos_token_id", gen_config_path, vocab);
    eos_listed.insert(eos_listed.end(), gen_listed.begin(), gen_listed.end());
    for (const int32_t id : eos_listed) {
      if (std::find(ids.eos_ids.begin(), ids.eos_ids.end(), id) == ids.eos_ids.end()) {
        ids.eos_ids.push_back(id);
      }
    }
  }
  return ids;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  fs::path file, dir;
  if (fs::is_directory(p, ec)) {
    dir = p;
    if (fs::is_regular_file(p / "tokenizer.json", ec)) file = p / "tokenizer.json";
    else if (fs::is_regular_file(p / "tokenizer.model", ec)) file = p / "tokenizer.model";
    else throw InputError(path + ": no tokenizer.json or tokenizer.model in this directory");
  } else if (fs::exists(p, ec)) {
    file = p;
    dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  } else {
    throw InputError(path + ": no such tokenizer file or directory");
  }

  const fs::path tok_config_path = dir / "tokenizer_config.json";
  const fs::path model_config_path = dir / "config.json";
  const fs::path gen_config_path = dir / "generation_config.json";
  const auto tok_config = read_json_if_present(tok_config_path);
  const auto model_config = read_json_if_present(model_config_path);
  const auto gen_config = read_json_if_present(gen_config_path);
  const nlohmann::json* tc = tok_config ? &*tok_config : nullptr;
  const nlohmann::json* mc = model_config ? &*model_config : nullptr;
  const nlohmann::json* gc = gen_config ? &*gen_config : nullptr;

  const bool is_json = file.extension() == ".json" ||
                       (file.extension() != ".model" && looks_like_json(file));
  if (is_json) {
    auto tok = HfTokenizer::load(file.string());
    if (tc) add_config_tokens(*tok, *tc, tok_config_path.string());
    SpecialTokenIds defaults;
    defaults.unk = tok->model_unk_id();
    tok->set_special_ids(resolve_special_ids(*tok, defaults, tc, tok_config_path.string(), mc,
                                             model_config_path.string(), gc,
                                             gen_config_path.string()));
    return tok;
  }
  auto tok = SentencePieceTokenizer::load(file.string());
  if (tc) add_config_tokens(*tok, *tc, tok_config_path.string());
  tok->set_special_ids(resolve_special_ids(*tok, tok->special_ids(), tc,
                                           tok_config_path.string(), mc,
                                           model_config_path.string(), gc,
                                           gen_config_path.string()));
  return tok;
}

}  // namespace ringtune
