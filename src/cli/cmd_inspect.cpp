// `ringtune inspect PATH`: what a model directory or a safetensors file holds, without loading
// the weights (headers only).
#include <filesystem>
#include <torch/torch.h>
#include <iostream>
#include <map>
#include <sstream>

#include "model/parameter_shapes.h"
#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/error.h"
#include "src/io/prepared_dataset.h"
#include "src/io/hf_model.h"
#include "src/io/h5.h"
#include "src/io/safetensors.h"
#include "src/io/checkpoint.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string human(double n) {
  const char* units[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) {
    n /= 1000;
    ++u;
  }
  std::ostringstream o;
  o.precision(n < 10 ? 3 : 4);
  o << n << units[u];
  return o.str();
}

// Groups "model.layers.N.rest" under "model.layers.*.rest" so a 32-layer model prints 9 lines.
std::string layer_pattern(const std::string& name) {
  const std::string key = "layers.";
  const auto pos = name.find(key);
  if (pos == std::string::npos) return name;
  const auto start = pos + key.size();
  auto end = start;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == start) return name;
  return name.substr(0, start) + "*" + name.substr(end);
}

// One line per name pattern, dtype and shape: a layer whose tensor differs from its siblings gets
// a line of its own.
void print_tensors(const std::vector<const SafeTensorsFile*>& files) {
  std::map<std::string, int> rows;  // "pattern  dtype [shape]" -> count
  std::map<std::string, int64_t> dtype_params;
  int64_t total = 0;
  for (const auto* f : files) {
    for (const auto& [name, info] : f->tensors()) {
      int64_t n = 1;
      for (auto d : info.shape) n *= d;
      total += n;
      dtype_params[info.dtype] += n;
      rows[layer_pattern(name) + "  " + info.dtype + " " + shape_str(info.shape)]++;
    }
  }
  std::cout << "tensors: stored parameters " << total << " (" << human(total) << ")";
  for (const auto& [dt, n] : dtype_params) std::cout << ", " << dt << " " << human(n);
  std::cout << "\n";
  for (const auto& [row, count] : rows) {
    std::cout << "  " << row;
    if (count > 1) std::cout << "  x" << count;
    std::cout << "\n";
  }
}

// The `kind` attribute of a ringtune HDF5 file ("" if it has none).
std::string h5_kind(const std::string& path) {
  const H5File f = H5File::open(path);
  return f.has_attr("kind") ? f.attr_string("kind") : "";
}

void inspect_model_dir(const std::string& dir) {
  const LlamaConfig c = read_hf_config(dir);
  std::cout << "model directory: " << dir << "\n"
            << "architecture: " << c.model_type << " decoder, " << c.num_hidden_layers
            << " layers, hidden " << c.hidden_size << ", intermediate " << c.intermediate_size
            << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads
            << (c.num_key_value_heads < c.num_attention_heads ? ", grouped-query" : "")
            << "), head_dim " << c.resolved_head_dim() << "\n"
            << "vocab: " << c.vocab_size << ", context: " << c.max_position_embeddings
            << ", embeddings " << (c.tie_word_embeddings ? "tied" : "untied")
            << ", q/k/v bias " << (c.attention_bias ? "yes" : "no") << "\n"
            << "rope: theta " << c.rope_theta << ", scaling " << c.rope_scaling.type;
  if (c.rope_scaling.type != "none") std::cout << " x" << c.rope_scaling.factor;
  std::cout << "\nnorm: RMSNorm eps " << c.rms_norm_eps << "\n"
            << "parameters (from config): " << c.parameter_count() << " ("
            << human(static_cast<double>(c.parameter_count())) << ")\n";
  std::vector<std::unique_ptr<SafeTensorsFile>> files;
  std::vector<const SafeTensorsFile*> ptrs;
  for (const auto& f : hf_weight_files(dir)) {
    files.push_back(std::make_unique<SafeTensorsFile>(f));
    ptrs.push_back(files.back().get());
  }
  std::cout << "weight files: " << files.size() << "\n";
  print_tensors(ptrs);
  // Each stored tensor against what config.json describes: every difference is listed with both
  // shapes, then the first one ends the command (exit 2), as loading the model would.
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& [name, shape] : parameter_shapes(c)) expected[name] = shape;
  std::vector<std::string> problems;
  for (const auto* f : ptrs)
    for (const auto& [name, info] : f->tensors()) {
      auto it = expected.find(name);
      if (it == expected.end()) {
        const bool ignored = name.find("rotary_emb.inv_freq") != std::string::npos ||
                             (name == "lm_head.weight" && c.tie_word_embeddings);
        if (!ignored) problems.push_back(f->path() + ": tensor \"" + name + "\" is not part of this config.json's model");
      } else {
        if (info.shape != it->second)
          problems.push_back(f->path() + ": tensor \"" + name + "\" has shape " + shape_str(info.shape) +
                             ", config.json implies " + shape_str(it->second));
        expected.erase(it);
      }
    }
  for (const auto& [name, shape] : expected) problems.push_back(dir + ": missing tensor \"" + name + "\"");
  if (problems.empty()) {
    std::cout << "check: every tensor has the shape config.json implies\n";
    return;
  }
  std::cout << "MISMATCH: " << problems.size() << " tensor(s) do not fit config.json:\n";
  for (const auto& line : problems) std::cout << "  " << line << "\n";
  throw InputError(problems.front() + (problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) +
                                                                  " more: see the listing)" : ""));
}

}  // namespace

int cmd_inspect(const Args& args) {
  ArgParser p("inspect", "PATH",
              "Describes a Hugging Face model directory (architecture, parameter count, dtypes,\n"
              "tensor shapes), a .safetensors file (headers only), a prepared dataset or a training\n"
              "checkpoint (.h5).",
              {});
  if (!p.parse(args)) return 0;
  if (p.positional().size() != 1) throw InputError("ringtune inspect: expected one PATH; see --help");
  const std::string path = p.positional()[0];
  if (!fs::exists(path)) throw InputError(path + ": no such file or directory");
  if (fs::is_directory(path)) {
    inspect_model_dir(path);
  } else if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    SafeTensorsFile f(path);
    std::cout << "safetensors file: " << path << "\n";
    for (const auto& [k, v] : f.metadata()) std::cout << "metadata " << k << ": " << v << "\n";
    print_tensors({&f});
  } else if (path.size() > 3 && path.substr(path.size() - 3) == ".h5" && h5_kind(path) == "ringtune-checkpoint") {
    const CheckpointState st = load_checkpoint(path);  // verifies every checksum
    std::cout << "checkpoint: " << path << "\n"
              << "step " << st.step << " of " << st.total_steps << ", epoch " << st.epoch
              << ", AdamW step " << st.adam_step << "\n"
              << "fingerprints: base " << st.base_hash << ", tokenizer " << st.tokenizer_hash
              << ", data " << st.data_hash << "\n";
    int64_t n = 0;
    for (const auto& [name, t] : st.trainable) n += t.numel();
    std::cout << "trainable tensors: " << st.trainable.size() << " (" << n << " values), optimizer moments: "
              << st.optimizer.size() << "\n";
    for (const auto& [name, t] : st.trainable) std::cout << "  " << name << "  " << c10::str(t.sizes()) << "\n";
    std::cout << "config:\n";
    std::istringstream cfg(st.config_yaml);
    std::string line;
    while (std::getline(cfg, line)) std::cout << "  " << line << "\n";
  } else if (path.size() > 3 && path.substr(path.size() - 3) == ".h5") {
    const PreparedDataset d = PreparedDataset::load(path);
    std::cout << "prepared dataset: " << path << "\n"
              << "sources: " << d.sources << "\n"
              << d.stats.describe() << "\n"
              << "fingerprints: data " << d.data_hash << ", tokenizer " << d.tokenizer_hash
              << ", format " << d.format_hash << "\n";
  } else {
    throw InputError(path + ": not a model directory, .safetensors or .h5 file");
  }
  return 0;
}

}  // namespace ringtune
