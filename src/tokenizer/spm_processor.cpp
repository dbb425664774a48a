// Loading the ringtune_spm module and calling through its C ABI.
#include "src/tokenizer/spm_processor.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "src/error.h"

namespace ringtune {

namespace {

struct SpmApi {
  void* (*load)(const char*, char*, size_t);
  void (*free_)(void*);
  int (*piece_size)(void*);
  int (*piece_to_id)(void*, const char*, size_t);
  void (*id_to_piece)(void*, int, void (*)(void*, const char*, size_t), void*);
  int (*piece_type)(void*, int);
  int (*special_id)(void*, int);
  int (*encode)(void*, const char*, size_t, void (*)(void*, int, size_t), void*, char*, size_t);
  int (*decode)(void*, const int*, size_t, void (*)(void*, const char*, size_t), void*, char*,
                size_t);
  int (*train)(const char*, char*, size_t);
};

std::string module_path() {
  if (const char* env = std::getenv("RINGTUNE_SPM_LIBRARY")) return env;
  // Beside the executable (build/ringtune, build/ringtune_tests), else where CMake built it.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (auto dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
      auto candidate = dir / "libringtune_spm.so";
      if (std::filesystem::exists(candidate)) return candidate.string();
    }
  }
  return RINGTUNE_SPM_MODULE;
}

const SpmApi& api() {
  static SpmApi a;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    const std::string path = module_path();
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!lib) {
      failure = "cannot load the SentencePiece module " + path + ": " + ::dlerror() +
                " (set RINGTUNE_SPM_LIBRARY to its path)";
      return;
    }
    auto sym = [&](const char* name) {
      void* s = ::dlsym(lib, name);
      if (!s && failure.empty()) failure = path + ": missing symbol " + name;
      return s;
    };
    a.load = reinterpret_cast<decltype(a.load)>(sym("rt_spm_load"));
    a.free_ = reinterpret_cast<decltype(a.free_)>(sym("rt_spm_free"));
    a.piece_size = reinterpret_cast<decltype(a.piece_size)>(sym("rt_spm_piece_size"));
    a.piece_to_id = reinterpret_cast<decltype(a.piece_to_id)>(sym("rt_spm_piece_to_id"));
    a.id_to_piece = reinterpret_cast<decltype(a.id_to_piece)>(sym("rt_spm_id_to_piece"));
    a.piece_type = reinterpret_cast<decltype(a.piece_type)>(sym("rt_spm_piece_type"));
    a.special_id = reinterpret_cast<decltype(a.special_id)>(sym("rt_spm_special_id"));
    a.encode = reinterpret_cast<decltype(a.encode)>(sym("rt_spm_encode"));
    a.decode = reinterpret_cast<decltype(a.decode)>(sym("rt_spm_decode"));
    a.train = reinterpret_cast<decltype(a.train)>(sym("rt_spm_train"));
  });
  if (!failure.empty()) throw Error(failure);
  return a;
}

void append_string(void* ctx, const char* data, size_t n) {
  static_cast<std::string*>(ctx)->append(data, n);
}

void append_piece(void* ctx, int id, size_t begin) {
  static_cast<std::vector<std::pair<int, size_t>>*>(ctx)->emplace_back(id, begin);
}

}  // namespace

SpmProcessor::SpmProcessor(const std::string& model_path) : path_(model_path) {
  char err[1024] = {0};
  handle_ = api().load(model_path.c_str(), err, sizeof(err));
  if (!handle_) throw InputError(model_path + ": cannot load SentencePiece model: " + err);
}

SpmProcessor::~SpmProcessor() {
  if (handle_) api().free_(handle_);
}

int SpmProcessor::piece_size() const { return api().piece_size(handle_); }
int SpmProcessor::piece_to_id(std::string_view piece) const {
  return api().piece_to_id(handle_, piece.data(), piece.size());
}
std::string SpmProcessor::id_to_piece(int id) const {
  std::string s;
  api().id_to_piece(handle_, id, append_string, &s);
  return s;
}
bool SpmProcessor::is_control(int id) const { return api().piece_type(handle_, id) & 1; }
bool SpmProcessor::is_unknown(int id) const { return api().piece_type(handle_, id) & 2; }
bool SpmProcessor::is_byte(int id) const { return api().piece_type(handle_, id) & 4; }
int SpmProcessor::bos_id() const { return api().special_id(handle_, 0); }
int SpmProcessor::eos_id() const { return api().special_id(handle_, 1); }
int SpmProcessor::pad_id() const { return api().special_id(handle_, 2); }
int SpmProcessor::unk_id() const { return api().special_id(handle_, 3); }

std::vector<std::pair<int, size_t>> SpmProcessor::encode(std::string_view text) const {
  std::vector<std::pair<int, size_t>> out;
  char err[1024] = {0};
  if (api().encode(handle_, text.data(), text.size(), append_piece, &out, err, sizeof(err)) != 0)
    throw InputError(path_ + ": sentencepiece encode failed: " + err);
  return out;
}

std::string SpmProcessor::decode(const std::vector<int>& ids) const {
  std::string out;
  char err[1024] = {0};
  if (api().decode(handle_, ids.data(), ids.size(), append_string, &out, err, sizeof(err)) != 0)
    throw InputError(path_ + ": sentencepiece decode failed: " + err);
  return out;
}

void spm_train(const std::string& args) {
  char err[2048] = {0};
  if (api().train(args.c_str(), err, sizeof(err)) != 0)
    throw InputError(std::string("sentencepiece training failed: ") + err);
}

}  // namespace ringtune
