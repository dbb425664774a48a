// ringtune_spm: the only code that links libsentencepiece. Debian's libsentencepiece carries its
// own copy of protobuf (3.14) with exported symbols, while libtorch loads the system libprotobuf
// (3.21); in one symbol scope one of them breaks. This module is dlopen'ed with RTLD_LOCAL |
// RTLD_DEEPBIND by src/tokenizer/spm_processor.cpp, so sentencepiece resolves its own protobuf
// and nothing else sees it. It exports a small C ABI; strings and lists come back by callback.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <vector>

// Exported by libsentencepiece (common.h, not an installed header).
namespace sentencepiece::logging {
void SetMinLogLevel(int v);
}

#define RT_SPM_API extern "C" __attribute__((visibility("default")))

namespace {
void set_error(char* err, size_t cap, const std::string& msg) {
  if (!err || cap == 0) return;
  const size_t n = std::min(cap - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}
using Sp = sentencepiece::SentencePieceProcessor;
}  // namespace

RT_SPM_API int rt_spm_abi_version() { return 1; }

RT_SPM_API void* rt_spm_load(const char* path, char* err, size_t err_cap) {
  sentencepiece::logging::SetMinLogLevel(3);  // see rt_spm_train: no logging from this scope
  auto* sp = new Sp();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    set_error(err, err_cap, status.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

RT_SPM_API void rt_spm_free(void* h) { delete static_cast<Sp*>(h); }

RT_SPM_API int rt_spm_piece_size(void* h) { return static_cast<Sp*>(h)->GetPieceSize(); }

RT_SPM_API int rt_spm_piece_to_id(void* h, const char* piece, size_t len) {
  return static_cast<Sp*>(h)->PieceToId(std::string_view(piece, len));
}

// Calls emit(ctx, bytes, len) once with the piece text.
RT_SPM_API void rt_spm_id_to_piece(void* h, int id, void (*emit)(void*, const char*, size_t),
                                   void* ctx) {
  const std::string& s = static_cast<Sp*>(h)->IdToPiece(id);
  emit(ctx, s.data(), s.size());
}

// Bit flags: 1 control, 2 unknown, 4 byte, 8 unused.
RT_SPM_API int rt_spm_piece_type(void* h, int id) {
  const Sp* sp = static_cast<Sp*>(h);
  return (sp->IsControl(id) ? 1 : 0) | (sp->IsUnknown(id) ? 2 : 0) | (sp->IsByte(id) ? 4 : 0) |
         (sp->IsUnused(id) ? 8 : 0);
}

// 0 bos, 1 eos, 2 pad, 3 unk.
RT_SPM_API int rt_spm_special_id(void* h, int which) {
  const Sp* sp = static_cast<Sp*>(h);
  switch (which) {
    case 0: return sp->bos_id();
    case 1: return sp->eos_id();
    case 2: return sp->pad_id();
    default: return sp->unk_id();
  }
}

// Encodes text; emit(ctx, id, begin_byte) per piece. Returns 0, or -1 with err set.
RT_SPM_API int rt_spm_encode(void* h, const char* text, size_t len,
                             void (*emit)(void*, int, size_t), void* ctx, char* err,
                             size_t err_cap) {
  const auto spt = static_cast<Sp*>(h)->EncodeAsImmutableProto(std::string_view(text, len));
  (void)err;
  (void)err_cap;
  const size_t n = spt.pieces_size();
  for (size_t i = 0; i < n; ++i) {
    const auto piece = spt.pieces(static_cast<int>(i));
    emit(ctx, static_cast<int>(piece.id()), piece.begin());
  }
  return 0;
}

// Decodes ids; emit(ctx, bytes, len) once with the text. Returns 0, or -1 with err set.
RT_SPM_API int rt_spm_decode(void* h, const int* ids, size_t n,
                             void (*emit)(void*, const char*, size_t), void* ctx, char* err,
                             size_t err_cap) {
  std::string out;
  const auto status = static_cast<Sp*>(h)->Decode(std::vector<int>(ids, ids + n), &out);
  if (!status.ok()) {
    set_error(err, err_cap, status.ToString());
    return -1;
  }
  emit(ctx, out.data(), out.size());
  return 0;
}

// Trains a model from a SentencePieceTrainer argument string. Returns 0, or -1 with err set.
// sentencepiece logs through std::cerr, which inside this RTLD_DEEPBIND scope is not the stream
// the process constructed (writing to it crashes); its logging stays off (FATAL only) before
// Train reads the flags, and callers pass --minloglevel=3 to keep it off.
RT_SPM_API int rt_spm_train(const char* args, char* err, size_t err_cap) {
  sentencepiece::logging::SetMinLogLevel(3);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    set_error(err, err_cap, status.ToString());
    return -1;
  }
  return 0;
}
