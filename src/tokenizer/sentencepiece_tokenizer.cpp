// SentencePiece tokenizer; see sentencepiece_tokenizer.h.
#include "src/tokenizer/sentencepiece_tokenizer.h"


#include "src/error.h"
#include "src/tokenizer/spm_processor.h"

namespace ringtune {

SentencePieceTokenizer::SentencePieceTokenizer() = default;

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->file_ = path;
  tok->sp_ = std::make_unique<SpmProcessor>(path);
  const int n = tok->sp_->piece_size();
  for (int id = 0; id < n; ++id) {
    if (!tok->sp_->is_control(id) && !tok->sp_->is_unknown(id)) continue;
    AddedToken t;
    t.content = tok->sp_->id_to_piece(id);
    t.id = id;
    t.special = true;
    tok->added_.add(t);
  }
  tok->special_.bos = tok->sp_->bos_id();
  tok->special_.eos = tok->sp_->eos_id();
  tok->special_.pad = tok->sp_->pad_id();
  tok->special_.unk = tok->sp_->unk_id();
  if (tok->special_.eos >= 0) tok->special_.eos_ids = {tok->special_.eos};
  return tok;
}

int32_t SentencePieceTokenizer::piece_count() const { return sp_->piece_size(); }

void SentencePieceTokenizer::add_token(const AddedToken& token) {
  if (token.id < piece_count() && sp_->id_to_piece(token.id) != token.content) {
    throw InputError(file_ + ": added token \"" + token.content + "\" has id " +
                     std::to_string(token.id) + ", which is the model's piece \"" +
                     sp_->id_to_piece(token.id) + "\"");
  }
  added_.add(token);
}

Encoding SentencePieceTokenizer::encode(const std::vector<TextSegment>& segments) const {
  std::string text;
  const std::vector<TextSpan> allowed = join_segments(segments, text);
  Encoding enc;
  for (const TextSection& sec : added_.split(text, allowed)) {
    if (sec.added_id >= 0) {
      enc.ids.push_back(sec.added_id);
      enc.offsets.push_back(static_cast<int64_t>(sec.begin));
      continue;
    }
    if (sec.end <= sec.begin) continue;
    for (const auto& [id, begin] :
         sp_->encode(std::string_view(text.data() + sec.begin, sec.end - sec.begin))) {
      enc.ids.push_back(static_cast<int32_t>(id));
      enc.offsets.push_back(static_cast<int64_t>(sec.begin + begin));
    }
  }
  return enc;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids,
                                           bool skip_special) const {
  std::string out;
  std::vector<int> run;
  const int32_t pieces = piece_count();
  auto flush = [&] {
    if (!run.empty()) out += sp_->decode(run);
    run.clear();
  };
  for (const int32_t id : ids) {
    if (const AddedToken* t = added_.by_id(id)) {
      flush();
      if (!(skip_special && t->special)) out += t->content;
      continue;
    }
    if (id >= 0 && id < pieces) run.push_back(id);  // other ids are skipped
  }
  flush();
  return out;
}

int32_t SentencePieceTokenizer::vocab_size() const {
  return std::max(piece_count(), added_.max_id() + 1);
}

std::optional<int32_t> SentencePieceTokenizer::token_to_id(std::string_view piece) const {
  if (const AddedToken* t = added_.by_content(piece)) return t->id;
  const int id = sp_->piece_to_id(piece);
  if (id < 0 || (id == sp_->unk_id() && sp_->id_to_piece(id) != piece)) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::id_to_piece(int32_t id) const {
  if (const AddedToken* t = added_.by_id(id)) return t->content;
  if (id < 0 || id >= piece_count()) return "";
  return sp_->id_to_piece(id);
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  const AddedToken* t = added_.by_id(id);
  return t != nullptr && t->special;
}

}  // namespace ringtune
