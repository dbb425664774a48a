// Shared helpers for the tests: fixture and golden paths, temporary directories, running the
// ringtune binary and capturing its output and exit code.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "src/template/value.h"

namespace ringtune {
class Tokenizer;
struct TokenizedSample;
}  // namespace ringtune

namespace ringtune_test {

inline std::string source_dir() { return RINGTUNE_SOURCE_DIR; }
inline std::string fixtures_dir() { return source_dir() + "/../shared/fixtures"; }
inline std::string stories_dir() { return fixtures_dir() + "/stories260k"; }
inline std::string golden_dir() { return source_dir() + "/tests/golden"; }

// A fresh directory under the system temp dir, removed when the object goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "ringtune") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (tag + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `ringtune <args>` (args already shell-quoted where needed).
RunResult run_ringtune(const std::string& args);
// Runs `mpirun -np N ... ringtune <args>` (oversubscribed, allowed as root, one thread per rank),
// with `env` (e.g. "A=1 B=2") exported to every rank.
RunResult run_ringtune_mpi(int np, const std::string& args, const std::string& env = "");
// Runs a shell command line, capturing stdout and stderr.
RunResult run_shell(const std::string& command);
inline std::string ringtune_binary() { return RINGTUNE_BINARY; }

// A small random Llama model as a Hugging Face directory (config.json + model.safetensors), with
// `tokenizer_src`'s files copied beside it when given (a tokenizer.model file or a directory).
void write_tiny_llama(const std::string& dir, int64_t vocab_size, int64_t hidden = 32,
                      int64_t layers = 2, uint64_t seed = 3, const std::string& tokenizer_src = "");

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

// strftime_now for chat templates at the golden files' fixed time, 2024-07-26 10:30:00
// (tests/golden/chat_templates/gen_jinja.py); a jinja::Value callable.
ringtune::jinja::Value fixed_strftime_now();

// The runs of consecutive loss-carrying tokens of a tokenized sample, each decoded.
std::vector<std::string> supervised_runs(const ringtune::Tokenizer& tok, const ringtune::TokenizedSample& s);

// The "loss" of every line of OUTPUT_DIR/metrics.jsonl, in order.
std::vector<double> metrics_losses(const std::string& output_dir);
// `n` chat samples (JSONL) "Weather in <city>?" -> weather(location="<city>") over 8 cities.
std::string weather_chats(int n);

}  // namespace ringtune_test
