// Implementation of the test helpers (see test_util.h).
#include "test_util.h"

#include <sys/wait.h>

#include <ctime>

#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model/llama.h"
#include "src/data/loss_mask.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include <sstream>
#include <stdexcept>

namespace ringtune_test {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
}

void write_tiny_llama(const std::string& dir, int64_t vocab_size, int64_t hidden, int64_t layers,
                      uint64_t seed, const std::string& tokenizer_src) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  ringtune::LlamaConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 2;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  ringtune::write_hf_config(dir, c);
  ringtune::LlamaForCausalLM model(c);
  model->init_weights(seed, 0.05);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value());
  ringtune::write_safetensors(dir + "/model.safetensors", tensors);
  if (tokenizer_src.empty()) return;
  if (fs::is_directory(tokenizer_src)) {
    for (const auto& e : fs::directory_iterator(tokenizer_src))
      fs::copy_file(e.path(), fs::path(dir) / e.path().filename(), fs::copy_options::overwrite_existing);
  } else {
    fs::copy_file(tokenizer_src, fs::path(dir) / fs::path(tokenizer_src).filename(), fs::copy_options::overwrite_existing);
  }
}

std::vector<std::string> supervised_runs(const ringtune::Tokenizer& tok, const ringtune::TokenizedSample& s) {
  std::vector<std::string> runs;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= s.ids.size(); ++i) {
    if (i < s.ids.size() && s.loss_mask[i]) {
      run.push_back(s.ids[i]);
    } else if (!run.empty()) {
      runs.push_back(tok.decode(run));
      run.clear();
    }
  }
  return runs;
}

ringtune::jinja::Value fixed_strftime_now() {
  using namespace ringtune::jinja;
  return Value(Callable{"strftime_now", [](const Args& a) {
    std::tm tm{};
    tm.tm_year = 124;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    tm.tm_hour = 10;
    tm.tm_min = 30;
    tm.tm_wday = 5;
    tm.tm_yday = 207;
    char buf[128];
    const size_t n = std::strftime(buf, sizeof buf, a.positional.at(0).as_string().c_str(), &tm);
    return Value(std::string(buf, n));
  }});
}

std::vector<double> metrics_losses(const std::string& output_dir) {
  std::vector<double> v;
  std::istringstream in(read_file(output_dir + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return v;
}

std::string weather_chats(int n) {
  const char* cities[] = {"Berlin", "Paris", "Rome", "Madrid", "Oslo", "Vienna", "Lisbon", "Prague"};
  std::string lines;
  for (int i = 0; i < n; ++i) {
    const std::string city = cities[i % 8];
    nlohmann::json sample = {{"messages", {{{"role", "user"}, {"content", "Weather in " + city + "?"}},
                                           {{"role", "assistant"}, {"content", "weather(location=\"" + city + "\")"}}}}};
    lines += sample.dump() + "\n";
  }
  return lines;
}

RunResult run_shell(const std::string& command) {
  TempDir tmp("ringtune-run");
  const std::string out = tmp.file("out"), err = tmp.file("err");
  const std::string cmd = "(" + command + ") >" + out + " 2>" + err + " </dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

RunResult run_ringtune(const std::string& args) { return run_shell(std::string(RINGTUNE_BINARY) + " " + args); }

RunResult run_ringtune_mpi(int np, const std::string& args, const std::string& env) {
  std::string exports = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 " + env;
  std::string xs;
  std::istringstream in(exports);
  std::string kv;
  while (in >> kv) xs += " -x " + kv.substr(0, kv.find('='));
  return run_shell("env " + exports + " mpirun --oversubscribe --bind-to none -np " + std::to_string(np) + xs + " " +
                   RINGTUNE_BINARY + " " + args);
}

}  // namespace ringtune_test
