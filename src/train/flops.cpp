// FLOPs per token and peak FLOP/s; see flops.h.
#include "src/train/flops.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "model/cpu_bf16.h"        // defines: cpu_bf16_products_widened
#include "src/io/atomic_file.h"  // defines: atomic_write

namespace fs = std::filesystem;

namespace ringtune {

FlopsModel flops_model(LlamaForCausalLM& model) {
  FlopsModel f;
  const LlamaConfig& c = model->config();
  f.layers = c.num_hidden_layers;
  f.hidden = c.hidden_size;
  for (const auto& p : model->named_parameters()) {
    const torch::Tensor& t = p.value();
    if (t.dim() != 2) continue;  // norms, biases
    const bool embedding = p.key().find("embed_tokens") != std::string::npos;
    // The table itself is a lookup; with tied embeddings it is also the output layer's weight.
    if (embedding && !c.tie_word_embeddings) continue;
    (t.requires_grad() ? f.trainable_matmul : f.frozen_matmul) += t.numel();
  }
  for (const auto& [name, lin] : nf4_linears(model)) f.frozen_matmul += lin->nf4->numel();  // frozen, not parameters
  return f;
}

namespace {

// Dense tensor-core peaks from the vendors' datasheets (no sparsity): {bf16/fp16, fp32}.
struct DevicePeak {
  const char* name;  // matched as a substring of the driver's model name, first match wins
  double half, single;
};
const DevicePeak kDevices[] = {
    {"H200", 989e12, 67e12},      {"H100 PCIe", 756e12, 51e12}, {"H100", 989e12, 67e12},
    {"A100", 312e12, 19.5e12},    {"L40S", 362e12, 91.6e12},    {"A10G", 70e12, 31.2e12},
    {"RTX 4090", 165e12, 82.6e12}, {"V100", 125e12, 15.7e12},
};

std::string gpu_model_name() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    std::ifstream in(e.path() / "information");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Model:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 6));
  }
  return "";
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

fs::path cache_file() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base = xdg && *xdg ? fs::path(xdg) : home && *home ? fs::path(home) / ".cache" : fs::path();
  return base.empty() ? base : base / "ringtune" / "peak_flops";
}

std::map<std::string, double> read_cache(const fs::path& file) {
  std::map<std::string, double> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos) continue;
    char* end = nullptr;
    const double v = std::strtod(line.c_str() + tab + 1, &end);
    if (end != line.c_str() + tab + 1 && v > 0) out[line.substr(0, tab)] = v;
  }
  return out;
}

// The best of a few square matmuls of the run's dtype on this rank's threads.
double measure_cpu(torch::ScalarType dtype) {
  const int64_t n = 1024;
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  auto out = torch::matmul(a, b);  // warm-up (oneDNN primitive creation, page faults, the thread pool)
  // The best of at least 8 products and a quarter of a second: the first products of a process
  // that starts on an idle machine ran at half speed here (119 against 218 GFLOP/s).
  double best = 1e30;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 8 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 0.25; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    torch::matmul_out(out, a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n * n * n) / best;
}

}  // namespace

double peak_flops(double configured, const std::string& device, const std::string& dtype, int threads,
                  std::string* source) {
  auto say = [source](const std::string& s) {
    if (source) *source = s;
  };
  if (configured > 0) {
    say("peak_flops from the config");
    return configured;
  }
  const bool half = dtype == "bfloat16" || dtype == "float16";
  if (device.rfind("cuda", 0) == 0) {
    const std::string name = gpu_model_name();
    for (const auto& d : kDevices)
      if (name.find(d.name) != std::string::npos) {
        say("table: " + name + (half ? " bf16/fp16 dense" : " fp32"));
        return half ? d.half : d.single;
      }
    say("no peak known for GPU '" + name + "' (set peak_flops)");
    return 0;
  }
  // Measured at every start (a quarter of a second) and cached as the best figure seen: a measurement
  // taken while the machine was busy (the test suite running beside it) would otherwise stay in
  // the cache and put MFU above 1 (seen: 125 GFLOP/s cached for float32 on 2 threads, 219 quiet).
  const torch::ScalarType st = dtype == "bfloat16" ? torch::kBFloat16 : dtype == "float16" ? torch::kHalf : torch::kFloat;
  // Where bf16 products are widened (model/cpu_bf16.h), the products the run makes are float32's.
  const bool widened = st == torch::kBFloat16 && cpu_bf16_products_widened();
  const std::string measured = widened ? dtype + " widened to float32" : dtype;
  const std::string key = cpu_model_name() + "|threads=" + std::to_string(threads) + "|" + measured;
  const fs::path file = cache_file();
  double cached = 0;
  if (!file.empty()) {
    const auto all = read_cache(file);
    const auto it = all.find(key);
    if (it != all.end()) cached = it->second;
  }
  const double v = std::max(cached, measure_cpu(widened ? torch::kFloat : st));
  say("measured matmul peak (" + measured + ", " + std::to_string(threads) + " thread(s)" +
      (file.empty() ? std::string(")") : "; the best seen, cached in " + file.string() + ")"));
  if (v <= cached) return v;
  if (!file.empty()) {
    try {  // a cache that cannot be written loses the best figure, nothing more
      std::error_code ec;
      fs::create_directories(file.parent_path(), ec);
      auto all = read_cache(file);
      all[key] = v;
      std::ostringstream text;
      for (const auto& [k, x] : all) text << k << '\t' << x << '\n';
      atomic_write(file.string(), text.str());
    } catch (const std::exception&) {
    }
  }
  return v;
}

}  // namespace ringtune
