// Hugging Face tokenizer.json tokenizer; see hf_tokenizer.h.
//
// encode(): the segments are joined; added tokens are found first (special ones only where a
// segment allows them); every other section goes through normalizer -> pre-tokenizer -> BPE on
// its own, exactly as the reference encodes the sections of one string. Text must be valid UTF-8.
#include "src/tokenizer/hf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "src/error.h"
#include "src/tokenizer/bpe_model.h"
#include "src/tokenizer/hf_decoders.h"
#include "src/tokenizer/hf_json.h"
#include "src/tokenizer/hf_normalizers.h"
#include "src/tokenizer/hf_pre_tokenizers.h"
#include "src/utf8.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Loading

std::unique_ptr<HfTokenizer> HfTokenizer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open tokenizer file");
  std::stringstream buf;
  buf << in.rdbuf();
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(buf.str());
  } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers beyond double's range
    throw InputError(path + ": invalid JSON: " + e.what());
  }
  return std::make_unique<HfTokenizer>(root, path);
}

HfTokenizer::HfTokenizer(const nlohmann::json& root, const std::string& file) : file_(file) {
  JsonContext ctx{file, ""};
  if (!root.is_object()) ctx.fail("expected a JSON object at the top level");
  try {
    const auto& model = json_field(root, "model", ctx);
    JsonContext mctx{file, "model"};
    std::string type = json_string_or(model, "type", "", mctx);
    if (type.empty() && model.is_object() && model.contains("merges")) type = "BPE";
    if (type != "BPE") {
      throw InputError(file + ": unsupported model type \"" + type + "\"");
    }
    const nlohmann::json null_json;
    auto component = [&](const char* key) -> const nlohmann::json& {
      const auto it = root.find(key);
      return it == root.end() ? null_json : *it;
    };
    normalizer_ = make_normalizer(component("normalizer"), file);
    PreTokenizerInfo info;
    pre_tokenizer_ = make_pre_tokenizer(component("pre_tokenizer"), file, &info);
    model_ = std::make_unique<BpeModel>(model, file, info.byte_level);

    if (const auto& added = component("added_tokens"); !added.is_null()) {
      if (!added.is_array()) ctx.fail("\"added_tokens\" must be an array");
      JsonContext actx{file, "added_tokens"};
      for (const auto& a : added) {
        AddedToken t;
        t.content = json_string(a, "content", actx);
        const int64_t id = json_int_or(a, "id", -1, actx);
        if (id < 0 || id > (1 << 24)) actx.fail("token \"" + t.content + "\" needs an id >= 0");
        t.id = static_cast<int32_t>(id);
        t.special = json_bool_or(a, "special", false, actx);
        t.lstrip = json_bool_or(a, "lstrip", false, actx);
        t.rstrip = json_bool_or(a, "rstrip", false, actx);
        t.single_word = json_bool_or(a, "single_word", false, actx);
        t.normalized = json_bool_or(a, "normalized", !t.special, actx);
        add_token(t);
      }
    }
    decoder_ = make_decoder(component("decoder"), file, &added_contents_);
    // Ids run 0..N-1: a hole would be an id the model has an embedding row for and no token for.
    for (int32_t id = 0, n = vocab_size(); id < n; ++id)
      if (model_->id_to_token(id).empty() && !added_.by_id(id))
        ctx.fail("no token has id " + std::to_string(id) + " (ids of model.vocab and added_tokens must run from 0 to " +
                 std::to_string(n - 1) + " without gaps)");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file + ": malformed tokenizer: " + e.what());
  }
  special_.unk = model_->unk_id();
}

HfTokenizer::~HfTokenizer() = default;

void HfTokenizer::add_token(const AddedToken& token) {
  added_.add(token);
  added_contents_.insert(token.content);
}

int32_t HfTokenizer::model_unk_id() const { return model_->unk_id(); }

// ---------------------------------------------------------------------------------------------
// Encoding

Encoding HfTokenizer::encode(const std::vector<TextSegment>& segments) const {
  std::string text;
  const std::vector<TextSpan> allowed = join_segments(segments, text);
  if (const size_t bad = utf8::first_invalid(text); bad != std::string::npos) {
    throw InputError("text to tokenize is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }

  Encoding enc;
  enc.ids.reserve(text.size() / 3 + 4);
  enc.offsets.reserve(text.size() / 3 + 4);
  std::vector<TextSpan> spans;
  for (const TextSection& sec : added_.split(text, allowed)) {
    if (sec.added_id >= 0) {
      enc.ids.push_back(sec.added_id);
      enc.offsets.push_back(static_cast<int64_t>(sec.begin));
      continue;
    }
    if (sec.end <= sec.begin) continue;
    NormalizedText nt;
    nt.text.assign(text, sec.begin, sec.end - sec.begin);
    nt.base = static_cast<int64_t>(sec.begin);
    nt.end = static_cast<int64_t>(sec.end);
    if (normalizer_) nt = normalizer_->normalize(std::move(nt));
    if (nt.text.empty()) continue;
    spans.assign(1, TextSpan{0, nt.text.size()});
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(nt, spans);
    model_->encode(nt, spans, enc.ids, enc.offsets);
  }
  return enc;
}

// ---------------------------------------------------------------------------------------------
// Decoding and vocabulary

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (const AddedToken* t = added_.by_id(id)) {
      if (!(skip_special && t->special)) tokens.push_back(t->content);
      continue;
    }
    const std::string& piece = model_->id_to_token(id);
    if (!piece.empty()) tokens.push_back(piece);  // ids the vocabulary lacks are skipped
  }
  std::string out;
  if (!decoder_) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  decoder_->decode_chain(tokens);
  for (const std::string& t : tokens) out += t;
  return out;
}

int32_t HfTokenizer::vocab_size() const { return std::max(model_->size(), added_.max_id() + 1); }

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view piece) const {
  if (const AddedToken* t = added_.by_content(piece)) return t->id;
  const int32_t id = model_->token_to_id(piece);
  if (id >= 0) return id;
  return std::nullopt;
}

std::string HfTokenizer::id_to_piece(int32_t id) const {
  if (const AddedToken* t = added_.by_id(id)) return t->content;
  return model_->id_to_token(id);
}

bool HfTokenizer::is_special(int32_t id) const {
  const AddedToken* t = added_.by_id(id);
  return t != nullptr && t->special;
}

std::string HfTokenizer::kind() const {
  return model_->byte_level() ? "hf-bpe(byte-level)" : "hf-bpe";
}

}  // namespace ringtune
