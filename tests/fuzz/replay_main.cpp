// main() of the corpus replay binaries (no libFuzzer): feeds every file of the directories (or the
// files) given on the command line to LLVMFuzzerTestOneInput, as libFuzzer does with a corpus. A
// crash or an exception the target does not catch fails the run.
//   fuzz_<name> CORPUS_DIR_OR_FILE...                   (tests/fuzz/CMakeLists.txt, RT_FUZZ_REPLAY=ON)
//   ringtune_fuzz_replay NAME CORPUS_DIR_OR_FILE...     (the main build, tests/fuzz/replay.cmake:
//       every target in one binary, each LLVMFuzzerTestOneInput renamed rt_fuzz_<name>; ctest runs
//       it as fuzz_replay_<name> over tests/fuzz/corpus/<name>)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#ifdef RT_FUZZ_REPLAY_ALL
#include <cstring>

#define RT_FUZZ_TARGETS(X) \
  X(safetensors) X(tokenizer) X(jinja) X(tokenizer_config) X(samples) X(config) X(adapter_config) X(h5)
#define RT_FUZZ_DECLARE(name) extern "C" int rt_fuzz_##name(const uint8_t* data, size_t size);
RT_FUZZ_TARGETS(RT_FUZZ_DECLARE)
#else
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
#endif

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  int first = 1;
#ifdef RT_FUZZ_REPLAY_ALL
  int (*target)(const uint8_t*, size_t) = nullptr;
#define RT_FUZZ_PICK(name) \
  if (argc > 1 && std::strcmp(argv[1], #name) == 0) target = rt_fuzz_##name;
  RT_FUZZ_TARGETS(RT_FUZZ_PICK)
  if (target == nullptr) {
    std::fprintf(stderr, "usage: %s TARGET CORPUS_DIR_OR_FILE...; TARGET: one of%s\n", argv[0],
#define RT_FUZZ_NAME(name) " " #name
                 RT_FUZZ_TARGETS(RT_FUZZ_NAME));
    return 2;
  }
  first = 2;
#else
  int (*target)(const uint8_t*, size_t) = LLVMFuzzerTestOneInput;
#endif
  std::vector<fs::path> files;
  for (int i = first; i < argc; ++i) {
    if (fs::is_directory(argv[i])) {
      for (const auto& e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...: no input files\n", argv[0]);
    return 2;
  }
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", f.c_str());
      return 2;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay %s (%zu bytes)\n", f.c_str(), bytes.size());
    target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replayed %zu inputs\n", files.size());
  return 0;
}
