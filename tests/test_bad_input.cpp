// Malformed input through the binary, one table: configs, data, models, tokenizers, checkpoints,
// adapters and flags. Every case must end with exit code 2, exactly one stderr line that is not an
// info log line (starting "error: " and naming the file, key, line or flag), no stack trace, and the
// workspace exactly as it was (no output directory, cache, lock or temporary file left behind).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/cpu_bf16.h"
#include "model/llama.h"
#include "src/io/checkpoint.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

// The workspace every case starts from: a tiny Llama model with Llama 2's tokenizer, chat data,
// and a config (cfg.yaml, paths relative to a case directory one level down).
struct Workspace {
  TempDir dir{"ringtune-badinput"};
  Workspace() {
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    write_file(dir.file("train.jsonl"), weather_chats(16));
  }
};

// The config of the cases, one "key: value" line per top-level key (nested maps as flow YAML);
// `change` replaces keys' lines (an empty value removes the key) and adds new ones at the end.
std::string config(const std::map<std::string, std::string>& change = {}) {
  const std::vector<std::pair<std::string, std::string>> base = {
      {"initial_base_model_ckpt_path", "../base"},
      {"train_path", "../train.jsonl"},
      {"output_dir", "out"},
      {"dtype", "float32"},
      {"context_length", "64"},
      {"generation_config", "{prompt_format: llama2}"},
      {"learning_rate", "0.01"},
      {"global_batch_size", "4"},
      {"train_batch_size_per_device", "2"},
      {"max_steps", "2"},
      {"seed", "5"},
      {"gradient_checkpointing", "false"},
      {"lora_config", "{r: 4, target_modules: [q_proj, v_proj]}"},
  };
  std::string out;
  std::map<std::string, std::string> rest = change;
  for (const auto& [k, v] : base) {
    auto it = rest.find(k);
    const std::string value = it == rest.end() ? v : it->second;
    if (it != rest.end()) rest.erase(it);
    if (!value.empty()) out += k + ": " + value + "\n";
  }
  for (const auto& [k, v] : rest) out += k + ": " + v + "\n";
  return out;
}

// A copy of the workspace's model in `dir`, its tensors passed through `edit` first.
using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;
void model_copy(const std::string& ws, const std::string& dir, const std::function<void(TensorList&)>& edit = {}) {
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.model"})
    fs::copy_file(ws + "/base/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  SafeTensorsFile st(ws + "/base/model.safetensors");
  TensorList tensors;
  for (const auto& [name, info] : st.tensors()) tensors.emplace_back(name, st.load(name, static_cast<int>(torch::kFloat32)));
  if (edit) edit(tensors);
  write_safetensors(dir + "/model.safetensors", tensors);
}

void set_tensor(TensorList& t, const std::string& name, const torch::Tensor& value) {
  for (auto& [n, v] : t)
    if (n == name) v = value;
}

// config.json of a model copy, edited.
void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_file(dir + "/config.json"));
  edit(j);
  write_file(dir + "/config.json", j.dump(2));
}

// A valid PEFT adapter for the workspace's model (exported from a short training run, made once).
std::string adapter_dir(const Workspace& w) {
  static std::string made;
  const std::string dir = w.dir.file("adapter");
  if (made == dir) return dir;
  const std::string run = w.dir.file("run");
  fs::create_directories(run);
  write_file(run + "/cfg.yaml", config({{"output_dir", "out"}, {"max_steps", "1"}}));
  auto r = run_shell("cd " + run + " && " + ringtune_binary() + " train cfg.yaml");
  if (r.exit_code != 0) throw std::runtime_error("adapter run failed: " + r.err);
  fs::rename(run + "/out/adapter", dir);
  fs::rename(run + "/out/checkpoints/step-00000001.h5", w.dir.file("good.h5"));
  fs::remove_all(run);
  made = dir;
  return dir;
}

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// Every path under `root`: directories by name (an entry made and removed again changes their
// modification time, not what they hold), everything else by type, size and modification time.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    out[it->path().string()] = S_ISDIR(st.st_mode) ? "directory"
                                                   : std::to_string(st.st_mode) + " " + std::to_string(st.st_size) +
                                                         " " + std::to_string(st.st_mtim.tv_sec) + "." +
                                                         std::to_string(st.st_mtim.tv_nsec);
  }
  return out;
}

bool is_info_log(const std::string& line) {
  return line.size() > 15 && line[0] == '[' && line.find(" info] ") != std::string::npos;
}

struct Case {
  std::string name;
  std::function<void(const std::string& dir, const Workspace& w)> setup;  // writes the case's files into dir
  std::string args;    // after `ringtune`, run in the case's directory
  std::string expect;  // part of the error line
};

using Setup = std::function<void(const std::string&, const Workspace&)>;

// A case directory holding cfg.yaml = config(change) (and optionally one more file).
Setup with_config(const std::map<std::string, std::string>& change, const std::string& file = "",
                  const std::string& content = "") {
  return [=](const std::string& dir, const Workspace&) {
    write_file(dir + "/cfg.yaml", config(change));
    if (!file.empty()) {
      fs::create_directories(fs::path(dir + "/" + file).parent_path());
      write_file(dir + "/" + file, content);
    }
  };
}
Setup with_file(const std::string& file, const std::string& content) {
  return with_config({}, file, content);
}
// A case whose data file holds `jsonl` (train_path: data.jsonl).
Setup with_data(const std::string& jsonl, const std::map<std::string, std::string>& change = {}) {
  auto c = change;
  c["train_path"] = "data.jsonl";
  return with_config(c, "data.jsonl", jsonl);
}
// A model copy at dir/m, edited, with cfg.yaml pointing at it.
Setup with_model(const std::function<void(TensorList&)>& edit_tensors,
                 const std::function<void(nlohmann::json&)>& edit_json = {}) {
  return [=](const std::string& dir, const Workspace& w) {
    model_copy(w.dir.path(), dir + "/m", edit_tensors);
    if (edit_json) edit_config(dir + "/m", edit_json);
    write_file(dir + "/cfg.yaml", config({{"initial_base_model_ckpt_path", "m"}}));
  };
}
// A copy of the adapter at dir/a with adapter_config.json edited.
Setup with_adapter_config(const std::function<void(nlohmann::json&)>& edit) {
  return [=](const std::string& dir, const Workspace& w) {
    copy_dir(adapter_dir(w), dir + "/a");
    nlohmann::json j = nlohmann::json::parse(read_file(dir + "/a/adapter_config.json"));
    edit(j);
    write_file(dir + "/a/adapter_config.json", j.dump(2));
    write_file(dir + "/cfg.yaml", config({{"initial_adapter_model_ckpt_path", "a"}}));
  };
}
Setup with_adapter_tensors(const std::function<void(TensorList&)>& edit) {
  return [=](const std::string& dir, const Workspace& w) {
    copy_dir(adapter_dir(w), dir + "/a");
    SafeTensorsFile st(dir + "/a/adapter_model.safetensors");
    TensorList t;
    for (const auto& [name, info] : st.tensors()) t.emplace_back(name, st.load(name, static_cast<int>(torch::kFloat32)));
    edit(t);
    write_safetensors(dir + "/a/adapter_model.safetensors.new", t);
    fs::rename(dir + "/a/adapter_model.safetensors.new", dir + "/a/adapter_model.safetensors");
    write_file(dir + "/cfg.yaml", config({{"initial_adapter_model_ckpt_path", "a"}}));
  };
}
// The raw bytes of a safetensors file: an 8-byte little-endian header length, the header, data.
std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t claimed_len = 0) {
  const uint64_t n = claimed_len ? claimed_len : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}
// A model directory at dir/m whose model.safetensors is `bytes`.
Setup with_weights_file(const std::string& bytes) {
  return [=](const std::string& dir, const Workspace& w) {
    fs::create_directories(dir + "/m");
    fs::copy_file(w.dir.file("base/config.json"), dir + "/m/config.json");
    write_file(dir + "/m/model.safetensors", bytes);
  };
}
const std::string kTinyTokenizer =
    R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})";

// Nested aliases in a flow map: the last list expands to 10^levels strings.
std::string alias_bomb(int levels) {
  std::string v = "{l0: &l0 [x, x, x, x, x, x, x, x, x, x]";
  for (int i = 1; i < levels; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    v += ", l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + prev;
    for (int j = 1; j < 10; ++j) v += ", " + prev;
    v += "]";
  }
  return v + "}";
}

const std::string kInt64Max = "9223372036854775807";

// "5,5,...,5": n token ids.
std::string repeated_ids(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += i ? ",5" : "5";
  return out;
}

// A case directory with a FIFO `name` (nothing ever writes it) and cfg.yaml = config(change).
Setup with_fifo(const std::string& name, const std::map<std::string, std::string>& change = {}) {
  return [=](const std::string& dir, const Workspace&) {
    write_file(dir + "/cfg.yaml", config(change));
    if (::mkfifo((dir + "/" + name).c_str(), 0644) != 0) throw std::runtime_error("mkfifo failed");
  };
}
// A case directory with a Unix socket `name` bound (and left) in it.
Setup with_socket(const std::string& name) {
  return [=](const std::string& dir, const Workspace&) {
    const std::string path = dir + "/" + name;
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd < 0 || path.size() >= sizeof addr.sun_path) throw std::runtime_error("cannot make a socket at " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (!bound) throw std::runtime_error("cannot bind a socket at " + path);
  };
}
// A case directory with a symbolic link `name` -> `target` and cfg.yaml = config(change).
Setup with_symlink(const std::string& name, const std::string& target, const std::map<std::string, std::string>& change) {
  return [=](const std::string& dir, const Workspace&) {
    write_file(dir + "/cfg.yaml", config(change));
    fs::create_symlink(target, dir + "/" + name);
  };
}

// An HDF5 file whose IEEE float32 type messages say exponent bias `bias` instead of 127: the
// message's properties are bit offset (2 bytes), precision (2), exponent location (1) and size
// (1), mantissa location (1) and size (1), then the bias (4): 0 0 32 0 23 8 0 23 127 0 0 0.
std::string with_float_bias(std::string bytes, unsigned char bias) {
  const std::string pattern("\x17\x08\x00\x17\x7f\x00\x00\x00", 8);
  size_t n = 0;
  for (size_t at = bytes.find(pattern); at != std::string::npos; at = bytes.find(pattern, at + 1), ++n)
    bytes[at + 4] = static_cast<char>(bias);
  if (n == 0) throw std::runtime_error("no float32 type message found");
  return bytes;
}

std::vector<Case> cases() {
  const std::string train = "train cfg.yaml";
  const std::string gen = "generate --model ../base --max-new-tokens 1";
  const std::string nan = "nan";
  std::vector<Case> c = {
      // ---- command line -----------------------------------------------------------------
      {"no arguments", {}, "", "usage: ringtune"},
      {"unknown command", {}, "trian cfg.yaml", "unknown command \"trian\" (did you mean \"train\"?)"},
      {"unknown option", {}, gen + " --max-new-token 3", "unknown option --max-new-token"},
      {"option without value", {}, "generate --model", "--model"},
      {"missing --model", {}, "generate", "missing --model"},
      {"prompt id not a number", {}, gen + " --prompt-ids 1,x", "--prompt-ids: \"x\" is not an integer"},
      {"prompt id outside vocab", {}, gen + " --prompt-ids 1,32000", "--prompt-ids: id 32000 outside the vocabulary"},
      {"empty prompt id", {}, gen + " --prompt-ids 1,,2", "--prompt-ids: \"\" is not an integer"},
      {"stop ids with a hole", {}, gen + " --stop-ids 2,,q", "--stop-ids: \"\" is not an integer"},
      {"stop ids outside vocab", {}, gen + " --stop-ids 99999", "--stop-ids: id 99999 outside the vocabulary"},
      {"temperature nan", {}, gen + " --temperature nan", "--temperature expects a finite number, got \"nan\""},
      {"temperature inf", {}, gen + " --temperature inf", "--temperature expects a finite number"},
      {"temperature negative", {}, gen + " --temperature -1", "--temperature must be >= 0"},
      {"temperature text", {}, gen + " --temperature warm", "--temperature expects a finite number, got \"warm\""},
      {"top-p zero", {}, gen + " --top-p 0", "--top-p must be in (0, 1]"},
      {"top-p nan", {}, gen + " --top-p nan", "--top-p expects a finite number"},
      {"max-new-tokens negative", {}, gen + " --max-new-tokens -1", "--max-new-tokens must be >= 0"},
      {"max-new-tokens text", {}, gen + " --max-new-tokens many", "--max-new-tokens expects an integer"},
      {"seed text", {}, gen + " --seed x", "--seed expects an integer"},
      {"device cuda:7", {}, gen + " --device cuda:7", "--device cuda:7"},
      {"device cuda on CPU", {}, gen + " --device cuda", "--device cuda"},
      {"device tpu", {}, gen + " --device tpu", "--device \"tpu\" is not a device"},
      {"dtype float8", {}, gen + " --dtype float8", "float8"},
      {"messages empty list", with_file("m.json", "[]"), gen + " --messages m.json", "m.json: no messages"},
      {"messages not json", with_file("m.json", "{\"messages\": [}"), gen + " --messages m.json", "m.json: invalid JSON"},
      {"messages missing file", {}, gen + " --messages nothere.json", "nothere.json"},
      {"messages bad role", with_file("m.json", R"([{"role": "robot", "content": "hi"}])"), gen + " --messages m.json",
       "m.json"},
      {"messages with --prompt", with_file("m.json", R"([{"role": "user", "content": "hi"}])"),
       gen + " --messages m.json --prompt hi", "give one of --prompt, --prompt-ids, --messages"},
      {"format unknown", with_file("m.json", R"([{"role": "user", "content": "hi"}])"),
       gen + " --messages m.json --format vicuna", "--format vicuna"},
      {"log level", {}, gen + " --log-level loud", "unknown level \"loud\""},
      {"render n negative", with_config({}), "render cfg.yaml --n -1", "--n must be >= 1"},
      {"render format", with_config({}), "render cfg.yaml --format xml", "--format must be text or json"},
      {"inspect missing path", {}, "inspect nothere", "nothere: no such file or directory"},
      {"export bad format", with_config({}), "export --checkpoint nothere.h5 --output o --format gguf", "gguf"},
      {"init-model heads", with_file("corpus.txt", "hello world\n"),
       "init-model --output newmodel --corpus corpus.txt --hidden 30 --heads 4", "--heads"},
      {"init-model missing corpus", {}, "init-model --output newmodel --corpus nothere.txt", "nothere.txt"},
      {"tokenize missing input", {}, "tokenize --tokenizer ../base --input nothere.jsonl", "nothere.jsonl"},
      {"tokenize bad line", with_file("t.jsonl", "{\"text\": 1e99999}\n"), "tokenize --tokenizer ../base --input t.jsonl",
       "t.jsonl:1: invalid JSON"},
      {"override without =", with_config({}), train + " max_steps", "max_steps"},
      {"override unknown key", with_config({}), train + " max_stpes=3", "unknown key \"max_stpes\""},

      // ---- config -------------------------------------------------------------------------
      {"config missing", {}, "train nothere.yaml", "nothere.yaml"},
      {"config invalid YAML", with_file("bad.yaml", "a: [1, 2\n"), "train bad.yaml", "bad.yaml:"},
      {"config nested too deep", with_file("deep.yaml", "a: " + std::string(3000, '[') + std::string(3000, ']') + "\n"),
       "train deep.yaml", "deep.yaml:1: invalid YAML: nested more than"},
      {"config two documents", with_file("two.yaml", config() + "---\nmax_steps: 3\n"), "train two.yaml",
       "two.yaml: holds 2 YAML documents"},
      {"config a list", with_file("list.yaml", "- a\n- b\n"), "train list.yaml", "list.yaml"},
      {"config empty", with_file("empty.yaml", ""), "train empty.yaml", "empty.yaml"},
      {"unknown key", with_config({{"learning_rte", "0.1"}}), train, "unknown key \"learning_rte\""},
      {"learning_rate text", with_config({{"learning_rate", "fast"}}), train, "learning_rate"},
      {"learning_rate nan", with_config({{"learning_rate", ".nan"}}), train, "learning_rate"},
      {"max_steps negative", with_config({{"max_steps", "-3"}}), train, "max_steps"},
      {"num_epochs zero", with_config({{"max_steps", ""}, {"num_epochs", "0"}}), train, "num_epochs"},
      {"global batch negative", with_config({{"global_batch_size", "-4"}}), train, "global_batch_size"},
      {"micro batch zero", with_config({{"train_batch_size_per_device", "0"}}), train, "train_batch_size_per_device"},
      {"micro batch text", with_config({{"train_batch_size_per_device", "many"}}), train,
       "train_batch_size_per_device\": must be an integer >= 1 or auto, got many"},
      {"micro batch auto without a global batch", with_config({{"train_batch_size_per_device", "auto"}, {"global_batch_size", ""}}),
       train, "auto keeps the global batch and picks the micro-batch: set global_batch_size"},
      {"memory budget not a size", with_config({{"memory_budget", "lots"}}), train, "memory_budget\": \"lots\" is not a size"},
      {"memory budget unit unknown", with_config({{"memory_budget", "3 parsecs"}}), train, "unknown unit \"parsecs\""},
      {"memory budget below micro-batch 1 (auto)",
       with_config({{"train_batch_size_per_device", "auto"}, {"memory_budget", "1MiB"}}), train,
       "memory_budget: auto: even micro-batch 1 needs an estimated"},
      {"memory budget below the configured micro-batch", with_config({{"memory_budget", "1MiB"}}), train,
       "memory_budget: the estimate for micro-batch 2 is"},
      {"context_length zero", with_config({{"context_length", "0"}}), train, "context_length"},
      {"context_length beyond model", with_config({{"context_length", "4096"}}), train,
       "context_length: 4096 exceeds the model's max_position_embeddings 512"},
      {"dtype unknown", with_config({{"dtype", "float8"}}), train, "dtype"},
      {"dtype float16 training", with_config({{"dtype", "float16"}}), train, "dtype: float16 training"},
      {"lora r zero", with_config({{"lora_config", "{r: 0, target_modules: [q_proj]}"}}), train, "lora_config.r"},
      {"lora r text", with_config({{"lora_config", "{r: four, target_modules: [q_proj]}"}}), train, "lora_config.r"},
      {"lora unknown module", with_config({{"lora_config", "{r: 4, target_modules: [q_prj]}"}}), train, "q_prj"},
      {"lora dropout 2", with_config({{"lora_config", "{r: 4, lora_dropout: 2, target_modules: [q_proj]}"}}), train,
       "lora_dropout"},
      {"quantization unknown", with_config({{"quantization", "int3"}}), train, "quantization"},
      {"quantization nf4 full fine-tuning", with_config({{"quantization", "nf4"}, {"lora_config", ""}}), train,
       "key \"quantization\": NF4 quantization freezes the base weights and needs LoRA"},
      {"load_in_4bit full fine-tuning", with_config({{"load_in_4bit", "true"}, {"lora_config", ""}}), train,
       "key \"load_in_4bit\": NF4 quantization"},
      {"adapter qlora full fine-tuning", with_config({{"adapter", "qlora"}, {"lora_config", ""}}), train,
       "key \"adapter\": NF4 quantization"},
      {"adapter kind unknown", with_config({{"adapter", "dora"}}), train, "adapter"},
      {"load_in_4bit contradicts quantization", with_config({{"load_in_4bit", "true"}, {"quantization", "none"}}),
       train, "key \"quantization\": none contradicts load_in_4bit: true"},
      {"optimizer unknown", with_config({{"optimizer", "adafactor"}}), train, "optimizer"},
      {"optim unknown", with_config({{"optim", "adamw_apex_fused"}}), train, "optim"},
      {"optim contradicts optimizer", with_config({{"optim", "adamw_bnb_8bit"}, {"optimizer", "adamw"}}), train,
       "key \"optim\": adamw_bnb_8bit contradicts optimizer: adamw"},
      {"adamw_8bit on tiny tensors only", with_config({{"optimizer", "adamw_8bit"}}), train,
       "nothing would be 8-bit; use adamw"},
      {"lr scheduler", with_config({{"lr_scheduler_type", "zigzag"}}), train, "lr_scheduler_type"},
      {"prompt format unknown", with_config({{"generation_config", "{prompt_format: vicuna}"}}), train, "vicuna"},
      {"task preference", with_config({{"task", "preference_tuning"}}), train, "task"},
      {"padding unknown", with_config({{"padding", "sideways"}}), train, "padding"},
      {"on_nonfinite unknown", with_config({{"on_nonfinite", "ignore"}}), train, "on_nonfinite"},
      {"resume missing file", with_config({{"resume", "nothere.h5"}}), train, "nothere.h5: no such checkpoint file (or use auto / none)"},
      {"resume a directory", with_config({{"resume", "."}}), train, ": not a checkpoint file (a .h5 file under output_dir/checkpoints)"},
      {"resume not hdf5", with_config({{"resume", "x.h5"}}, "x.h5", "not a checkpoint"), train,
       "x.h5: not a ringtune checkpoint (not an HDF5 file)"},
      {"base path missing", with_config({{"initial_base_model_ckpt_path", "nothere"}}), train,
       "initial_base_model_ckpt_path: "},
      {"base path a file", with_config({{"initial_base_model_ckpt_path", "../base/config.json"}}), train,
       "config.json is a file; expected a Hugging Face model directory"},
      {"hub model id", with_config({{"initial_base_model_ckpt_path", ""}, {"model_id", "meta-llama/Llama-2-7b-hf"}}), train,
       "model_id"},
      {"train_path missing", with_config({{"train_path", "nothere.jsonl"}}), train, "nothere.jsonl"},
      {"train_path a directory", with_config({{"train_path", "../base"}}), train, "base: not a regular file (a directory); expected a JSONL"},
      {"valid_path missing", with_config({{"valid_path", "nothere.jsonl"}}), train, "nothere.jsonl"},
      {"output_dir a file", with_config({{"output_dir", "f"}}, "f", "x"), train, "output_dir"},
      {"non-UTF-8 string", with_config({{"model_id", "caf\xe9"}}), train, "model_id"},
      {"config seed text", with_config({{"seed", "abc"}}), train, "seed"},
      {"column_map not JSON", with_config({{"column_map", "'{bad'"}}), train, "column_map"},
      {"chat template bad jinja", with_config({{"generation_config", "{prompt_format: auto}"},
                                               {"chat_template", "'{% for m in messages %}{{ m.content }'"}}),
       train, "chat_template"},
      {"tokenizer path missing", with_config({{"tokenizer_path", "nothere"}}), train, "tokenizer_path"},
      {"render tokenizer bigger than model",
       with_config({{"tokenizer_path", "'" + fixtures_dir() + "/tokenizers/llama3-hf'"}}), "render cfg.yaml",
       "token ids, more than the model's vocab_size 32000"},
      {"prepare tokenizer bigger than model",
       with_config({{"tokenizer_path", "'" + fixtures_dir() + "/tokenizers/llama3-hf'"}}), "prepare cfg.yaml",
       "token ids, more than the model's vocab_size 32000"},

      // ---- data ---------------------------------------------------------------------------
      {"data empty", with_data(""), "prepare cfg.yaml", "no usable samples"},
      {"data empty train", with_data(""), train, "no usable samples"},
      {"data invalid JSON", with_data("{\"messages\": [\n"), train, "data.jsonl:1"},
      {"data number overflow",
       with_data("{\"messages\": [{\"role\": \"user\", \"content\": 1e99999}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n"),
       train, "data.jsonl:1"},
      {"data not an object", with_data("[1, 2]\n"), train, "data.jsonl:1"},
      {"data no messages", with_data("{\"text\": 3}\n"), train, "data.jsonl:1"},
      {"data content not a string",
       with_data("{\"messages\": [{\"role\": \"user\", \"content\": 7}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n"),
       train, "data.jsonl:1"},
      {"data unknown role",
       with_data("{\"messages\": [{\"role\": \"robot\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n"),
       train, "data.jsonl:1"},
      {"data no assistant", with_data("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n"), train, "data.jsonl:1"},
      {"data invalid UTF-8",
       with_data("{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n"),
       train, "data.jsonl:1"},
      {"data bad third line", with_data(weather_chats(2) + "{oops}\n"), train, "data.jsonl:3"},
      {"data binary", with_data(std::string("\x00\x01\x02\xff\xfe", 5) + "\n"), train, "data.jsonl:1"},
      {"data array unterminated", with_config({{"train_path", "data.json"}}, "data.json", "[{\"messages\": []}"), train,
       "data.json"},
      {"valid data bad", with_config({{"valid_path", "v.jsonl"}}, "v.jsonl", "{nope\n"), train, "v.jsonl:1"},

      // ---- models -------------------------------------------------------------------------
      {"config.json invalid", with_model({}, [](nlohmann::json& j) { j = "not an object"; }), train, "config.json"},
      {"config.json hidden_size text", with_model({}, [](nlohmann::json& j) { j["hidden_size"] = "big"; }), train,
       "hidden_size"},
      {"config.json heads do not divide", with_model({}, [](nlohmann::json& j) { j["num_attention_heads"] = 5; }), train,
       "num_attention_heads"},
      {"config.json negative vocab", with_model({}, [](nlohmann::json& j) { j["vocab_size"] = -1; }), train, "vocab_size"},
      {"config.json mixtral", with_model({}, [](nlohmann::json& j) { j["model_type"] = "mixtral"; }), train, "mixtral"},
      {"weights NaN",
       with_model([](TensorList& t) {
         auto w = t[3].second.clone();
         w.view(-1)[5] = std::nanf("");
         t[3].second = w;
       }),
       train, "NaN"},
      {"weights infinity",
       with_model([](TensorList& t) {
         auto w = t[2].second.clone();
         w.view(-1)[0] = INFINITY;
         t[2].second = w;
       }),
       train, "infinite"},
      {"weights NaN in generate",
       [](const std::string& dir, const Workspace& w) {
         model_copy(w.dir.path(), dir + "/m", [](TensorList& t) { t[0].second = t[0].second * std::nanf(""); });
       },
       "generate --model m --max-new-tokens 1", "NaN"},
      {"weights mis-shaped",
       with_model([](TensorList& t) { set_tensor(t, "model.norm.weight", torch::ones({31})); }), train,
       "model.norm.weight\" has shape [31]"},
      {"weights missing tensor",
       with_model([](TensorList& t) { t.erase(t.begin()); }), train, "missing tensor"},
      {"weights extra tensor",
       with_model([](TensorList& t) { t.emplace_back("model.extra.weight", torch::ones({2})); }), train,
       "unexpected tensor \"model.extra.weight\""},
      {"weights integer dtype",
       with_model([](TensorList& t) { set_tensor(t, "model.norm.weight", torch::ones({32}, torch::kInt32)); }), train,
       "model.norm.weight"},
      {"safetensors empty", with_weights_file(""), "generate --model m", "model.safetensors"},
      {"safetensors header length huge", with_weights_file(safetensors_bytes("{}", "", 1ull << 60)),
       "generate --model m", "model.safetensors"},
      {"safetensors header not JSON", with_weights_file(safetensors_bytes("{nope", "")), "generate --model m",
       "model.safetensors"},
      {"safetensors offsets outside",
       with_weights_file(safetensors_bytes(
           R"({"model.norm.weight": {"dtype": "F32", "shape": [32], "data_offsets": [0, 1280]}})", std::string(128, '\0'))),
       "generate --model m", "model.safetensors"},
      {"safetensors shape and size disagree",
       with_weights_file(safetensors_bytes(
           R"({"model.norm.weight": {"dtype": "F32", "shape": [32], "data_offsets": [0, 64]}})", std::string(64, '\0'))),
       "generate --model m", "model.safetensors"},
      {"inspect mis-shaped",
       [](const std::string& dir, const Workspace& w) {
         model_copy(w.dir.path(), dir + "/m",
                    [](TensorList& t) { set_tensor(t, "model.layers.1.mlp.up_proj.weight", torch::ones({64, 31})); });
       },
       "inspect m", "model.layers.1.mlp.up_proj.weight\" has shape [64, 31], config.json implies [64, 32]"},
      {"sharded index names a missing shard",
       [](const std::string& dir, const Workspace& w) {
         model_copy(w.dir.path(), dir + "/m");
         fs::remove(dir + "/m/model.safetensors");
         write_file(dir + "/m/model.safetensors.index.json",
                    R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
       },
       "generate --model m", "model-00001-of-00002.safetensors"},

      // ---- tokenizers ---------------------------------------------------------------------
      {"tokenizer.json invalid", with_config({{"tokenizer_path", "tok"}}, "tok/tokenizer.json", "{"), train,
       "tokenizer.json"},
      {"tokenizer.json no model", with_config({{"tokenizer_path", "tok"}}, "tok/tokenizer.json", "{}"), train,
       "tokenizer.json"},
      {"tokenizer.json id gap",
       with_config({{"tokenizer_path", "tok"}}, "tok/tokenizer.json",
                   R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 3}, "merges": ["a b"]}})"),
       "render cfg.yaml", "no token has id 2"},
      {"tokenizer.json vocab id text",
       with_config({{"tokenizer_path", "tok"}}, "tok/tokenizer.json",
                   R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})"),
       train, "tokenizer.json"},
      {"tokenizer.json unigram", with_config({{"tokenizer_path", "tok"}}, "tok/tokenizer.json",
                                              R"({"model": {"type": "Unigram", "vocab": []}})"),
       train, "Unigram"},
      {"tokenizer.model garbage", with_config({{"tokenizer_path", "tok/tokenizer.model"}}, "tok/tokenizer.model", "garbage"),
       train, "tokenizer.model"},
      {"tokenizer_config template broken",
       [](const std::string& dir, const Workspace&) {
         fs::create_directories(dir + "/tok");
         write_file(dir + "/tok/tokenizer.json", kTinyTokenizer);
         write_file(dir + "/tok/tokenizer_config.json", R"({"chat_template": "{% if %}"})");
         write_file(dir + "/cfg.yaml", config({{"tokenizer_path", "tok"}, {"generation_config", "{prompt_format: auto}"}}));
       },
       "render cfg.yaml", "chat_template"},
      {"tokenizer_config not JSON",
       [](const std::string& dir, const Workspace&) {
         fs::create_directories(dir + "/tok");
         write_file(dir + "/tok/tokenizer.json", kTinyTokenizer);
         write_file(dir + "/tok/tokenizer_config.json", "{chat_template");
         write_file(dir + "/cfg.yaml", config({{"tokenizer_path", "tok"}, {"generation_config", "{prompt_format: auto}"}}));
       },
       "render cfg.yaml", "tokenizer_config.json"},

      // ---- checkpoints and adapters ---------------------------------------------------------
      {"resume truncated checkpoint",
       [](const std::string& dir, const Workspace& w) {
         adapter_dir(w);
         const std::string bytes = read_file(w.dir.file("good.h5"));
         write_file(dir + "/cut.h5", bytes.substr(0, bytes.size() / 2));
         write_file(dir + "/cfg.yaml", config({{"resume", "cut.h5"}}));
       },
       train, "cut.h5"},
      {"resume a prepared-data file",
       [](const std::string& dir, const Workspace& w) {
         write_file(dir + "/cfg.yaml", config({{"output_dir", "prep"}}));
         run_shell("cd " + dir + " && " + ringtune_binary() + " prepare cfg.yaml");
         fs::rename(dir + "/prep/prepared/train.h5", dir + "/data.h5");
         fs::remove_all(dir + "/prep");
         write_file(dir + "/cfg.yaml", config({{"resume", "data.h5"}}));
       },
       train, "data.h5"},
      {"export from a non-checkpoint", with_file("x.h5", "plain text"), "export --checkpoint x.h5 --output o --format peft", "x.h5"},
      {"adapter r text", with_adapter_config([](nlohmann::json& j) { j["r"] = "8"; }), train,
       "adapter_config.json: r: expected an integer, got a string"},
      {"adapter lora_alpha text", with_adapter_config([](nlohmann::json& j) { j["lora_alpha"] = "x"; }), train,
       "adapter_config.json: lora_alpha: expected a number"},
      {"adapter target_modules number", with_adapter_config([](nlohmann::json& j) { j["target_modules"] = 5; }), train,
       "target_modules"},
      {"adapter target_modules list of numbers",
       with_adapter_config([](nlohmann::json& j) { j["target_modules"] = {1, 2}; }), train,
       "adapter_config.json: target_modules: expected a list of module names"},
      {"adapter use_dora text", with_adapter_config([](nlohmann::json& j) { j["use_dora"] = "yes"; }), train,
       "adapter_config.json: use_dora: expected true or false"},
      {"adapter modules_to_save text", with_adapter_config([](nlohmann::json& j) { j["modules_to_save"] = "lm_head"; }),
       train, "adapter_config.json: modules_to_save"},
      {"adapter peft_type", with_adapter_config([](nlohmann::json& j) { j["peft_type"] = "IA3"; }), train, "peft_type"},
      {"adapter r missing", with_adapter_config([](nlohmann::json& j) { j.erase("r"); }), train, "adapter_config.json: r"},
      {"adapter other rank", with_adapter_config([](nlohmann::json& j) { j["r"] = 8; }), train, "adapter_model.safetensors"},
      {"adapter NaN tensor",
       with_adapter_tensors([](TensorList& t) { t[0].second = t[0].second * std::nanf(""); }), train, "NaN"},
      {"adapter mis-shaped tensor",
       with_adapter_tensors([](TensorList& t) { t[0].second = torch::zeros({3, 3}); }), train, "has shape [3, 3]"},
      {"adapter without weights",
       [](const std::string& dir, const Workspace& w) {
         copy_dir(adapter_dir(w), dir + "/a");
         fs::remove(dir + "/a/adapter_model.safetensors");
         write_file(dir + "/cfg.yaml", config({{"initial_adapter_model_ckpt_path", "a"}}));
       },
       train, "adapter_model.safetensors"},
      {"adapter path missing", with_config({{"initial_adapter_model_ckpt_path", "nothere"}}), train,
       "initial_adapter_model_ckpt_path"},
      {"generate adapter missing", {}, gen + " --adapter nothere", "nothere"},
      {"config alias into itself", with_config({{"seed", "&a [*a]"}}), train, "key \"seed\": the value is nested more "
                                                                             "than 64 levels deep"},
      {"config aliases that multiply", with_config({{"logger", alias_bomb(8)}}), train,
       "key \"logger\": the value is more than a million items"},

      // ---- found by fuzzing: numbers past any real run, files that are not files, leftovers ----
      // Before the bounds these hung (planning, the memory estimate), overflowed (exit 1) or ran
      // out of memory; each is now refused at the key.
      {"context_length huge", with_config({{"context_length", kInt64Max}}), train,
       "key \"context_length\": must be <= 1048576, got 9223372036854775807"},
      {"context_length past the model, estimate past the machine", with_config({{"context_length", "1048576"}}), train,
       "context_length: 1048576 exceeds the model's max_position_embeddings 512"},
      {"a value with a line break, echoed", with_config({{"lr_scheduler_type", "\"zig\\nzag\""}}), train,
       "\"zig\\nzag\" is not one of"},
      {"num_epochs huge", with_config({{"max_steps", ""}, {"num_epochs", kInt64Max}}), train,
       "key \"num_epochs\": must be <= 10000"},
      {"global_batch_size huge", with_config({{"global_batch_size", kInt64Max}}), train,
       "key \"global_batch_size\": must be <= 16777216"},
      {"min_update_steps huge", with_config({{"max_steps", ""}, {"min_update_steps", kInt64Max}}), train,
       "key \"min_update_steps\": must be <= 1000000000"},
      {"min_update_steps past 10000 epochs", with_config({{"max_steps", ""}, {"min_update_steps", "1000000000"}}), train,
       "min_update_steps: 1000000000 steps need more than 10000 epochs of this data"},
      {"gradient_accumulation_steps huge", with_config({{"global_batch_size", ""}, {"gradient_accumulation_steps", kInt64Max}}),
       train, "key \"gradient_accumulation_steps\": must be <= 1048576"},
      {"derived batch too large",
       with_config({{"global_batch_size", ""}, {"gradient_accumulation_steps", "1048576"}, {"num_devices", "16"}}), train,
       "x num_devices is 33554432 sequences per step; at most 16777216"},
      {"micro-batch too large", with_config({{"global_batch_size", ""}, {"train_batch_size_per_device", "999999999"}}), train,
       "train_batch_size_per_device x gradient_accumulation_steps is 999999999 sequences per step"},
      {"activations past the estimate's arithmetic",
       [](const std::string& dir, const Workspace& w) {
         model_copy(w.dir.path(), dir + "/m");
         edit_config(dir + "/m", [](nlohmann::json& j) { j["vocab_size"] = 4194304; });
         write_file(dir + "/cfg.yaml", config({{"initial_base_model_ckpt_path", "m"}, {"context_length", "512"},
                                               {"train_batch_size_per_device", "999999999"}}));
       },
       train, "micro-batches of up to 999999999 sequences of 512 tokens would need on the order of"},
      {"lora r huge", with_config({{"lora_config", "{r: 2147483648}"}}), train, "key \"lora_config.r\": must be <= 65536"},
      {"lora_alpha huge", with_config({{"lora_config", "{r: 4, lora_alpha: 1e308}"}}), train,
       "key \"lora_config.lora_alpha\": must be <= 1000000, got 1e308"},
      {"config.json hidden_size huge", with_model({}, [](nlohmann::json& j) { j["hidden_size"] = int64_t{1} << 62; }), train,
       "hidden_size = 4611686018427387904: must be <= 131072"},
      {"config.json layers huge", with_model({}, [](nlohmann::json& j) { j["num_hidden_layers"] = int64_t{1000000000000}; }),
       train, "num_hidden_layers = 1000000000000: must be <= 1024"},
      {"config.json vocab huge", with_model({}, [](nlohmann::json& j) { j["vocab_size"] = int64_t{1} << 40; }), train,
       "vocab_size = 1099511627776: must be <= 4194304"},
      {"init-model hidden huge before heads", with_file("c.txt", "some words for a tokenizer\n"),
       "init-model --output m2 --corpus c.txt --hidden 99999999999", "--hidden = 99999999999: must be <= 131072"},
      {"config empty", with_file("e.yaml", "\n"), "train e.yaml", "e.yaml: the config is empty"},
      {"train_path a URL", with_config({}), train + " train_path=s3://bucket/train.jsonl",
       "s3://bucket/train.jsonl is a URL; ringtune reads local files"},
      {"init-model layers huge", with_file("c.txt", "some words for a tokenizer\n"),
       "init-model --output m2 --corpus c.txt --layers 1000000000", "--layers = 1000000000: must be <= 1024"},
      {"init-model beyond memory", with_file("c.txt", "some words for a tokenizer\n"),
       "init-model --output m2 --corpus c.txt --hidden 16384 --heads 128 --kv-heads 8 --layers 1000",
       "parameters; making it needs about"},
      {"init-model template not UTF-8", with_file("t.jinja", "{{ \"\xff\" }}"),
       "init-model --output m2 --corpus t.jinja --chat-template t.jinja", "--chat-template t.jinja: not UTF-8 (byte 4)"},
      {"generate prompt fills the context", {}, "generate --model ../base --prompt-ids " + repeated_ids(512),
       "the prompt is 512 tokens; ../base/config.json: max_position_embeddings 512 leaves no room to generate"},
      {"train_path /dev/zero", with_config({{"train_path", "/dev/zero"}}), train,
       "train_path: /dev/zero: not a regular file (a character device)"},
      {"train_path a FIFO", with_fifo("f.jsonl", {{"train_path", "f.jsonl"}}), train, "f.jsonl: not a regular file (a FIFO)"},
      {"config /dev/zero", {}, "train /dev/zero", "/dev/zero: more than 16 MiB; expected a YAML config file"},
      {"config a socket", with_socket("s.yaml"), "train s.yaml", "s.yaml: not a regular file (a socket), expected a YAML config file"},
      {"train_path a symbolic link loop", with_symlink("loop", "loop", {{"train_path", "loop"}}), train,
       "loop: Too many levels of symbolic links"},
      {"output_dir name too long", with_config({{"output_dir", std::string(300, 'x')}}), train, "File name too long"},
      {"output_dir/checkpoints a file", with_config({{"output_dir", "o"}}, "o/checkpoints", "x"), train,
       "o/checkpoints exists and is not a directory"},
      {"logits --output a directory", with_file("d/x", ""), "logits --model ../base --input t.safetensors --output d",
       "--output: d is a directory"},
      {"tokenize --output a directory", with_file("d/x", "{\"text\": \"hi\"}\n"), "tokenize --tokenizer ../base --input d/x --output d",
       "--output: d is a directory"},
      {"eval --output a directory", with_config({{"valid_path", "../train.jsonl"}}, "d/x", ""), "eval cfg.yaml --output d",
       "--output: d is a directory"},
      {"resume another rank into a new output_dir", with_config({{"resume", "../good.h5"}, {"lora_config", "{r: 8, target_modules: [q_proj, v_proj]}"}}),
       train, "(other LoRA rank?)"},
      {"resume a checkpoint whose float type header is damaged",
       [](const std::string& dir, const Workspace& w) {
         adapter_dir(w);
         write_file(dir + "/flip.h5", with_float_bias(read_file(w.dir.file("good.h5")), 0x7e));
         write_file(dir + "/cfg.yaml", config({{"resume", "flip.h5"}}));
       },
       train, "is not stored as the type ringtune writes (corrupted)"},
      {"prepare valid_path missing", with_config({{"valid_path", "nothere.jsonl"}}), "prepare cfg.yaml",
       "nothere.jsonl: no such data file"},
      {"prepare valid_path bad after train built", with_config({{"valid_path", "v.jsonl"}}, "v.jsonl", "{nope\n"),
       "prepare cfg.yaml", "v.jsonl:1"},
  };
  // Before the refusal, libtorch 1.13 failed inside its product (exit 1, a stack trace).
  if (!cpu_has_float16_products())
    c.push_back({"dtype float16 on the CPU", {}, gen + " --dtype float16",
                 "dtype \"float16\": this libtorch has no float16 matrix product on the CPU"});
  return c;
}

}  // namespace

TEST(BadInput, EveryCaseExitsTwoWithOneLineAndLeavesNothingBehind) {
  Workspace w;
  adapter_dir(w);
  const auto all = cases();
  EXPECT_GE(all.size(), 100u);
  int quiet = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const Case& c = all[i];
    const std::string dir = w.dir.file("case" + std::to_string(i));
    fs::create_directories(dir);
    if (c.setup) c.setup(dir, w);
    const auto before = snapshot(w.dir.path());
    const RunResult r =
        run_shell("cd " + dir + " && timeout 120 " + ringtune_binary() + (c.args.empty() ? "" : " " + c.args) + " < /dev/null");
    const auto after = snapshot(w.dir.path());
    SCOPED_TRACE("case " + std::to_string(i) + " \"" + c.name + "\": ringtune " + c.args + "\nstderr:\n" + r.err);
    EXPECT_EQ(r.exit_code, 2);
    std::vector<std::string> lines;
    int info = 0;
    std::string line;
    for (char ch : r.err + (r.err.empty() || r.err.back() == '\n' ? "" : "\n")) {
      if (ch != '\n') {
        line += ch;
        continue;
      }
      if (is_info_log(line)) ++info;
      else lines.push_back(line);
      line.clear();
    }
    if (c.args.empty()) {  // no command: the usage, on stderr
      EXPECT_NE(r.err.find(c.expect), std::string::npos);
      EXPECT_EQ(r.out, "");
    } else {
      EXPECT_EQ(lines.size(), 1u);
      const std::string first = lines.empty() ? "" : lines[0];
      EXPECT_EQ(first.rfind("error: ", 0), 0u);
      EXPECT_NE(first.find(c.expect), std::string::npos) << "expected: " << c.expect;
    }
    quiet += info == 0;
    EXPECT_EQ(before, after) << "the case changed the workspace";
    fs::remove_all(dir);
  }
  std::cout << all.size() << " malformed inputs; " << quiet << " of them failed before any log line\n";
}

// --log-level on the command line wins over the config's logging.level, also when per-rank log
// files are written (the trainer sets logging up again for them); without the flag the config's
// level applies. Before, the per-rank set-up took the config's level (default info) whatever the
// flag said, and without per-rank files logging.level did nothing.
TEST(LogLevel, CommandLineWinsOverTheConfigAndTheConfigAppliesWithoutIt) {
  Workspace w;
  struct Run {
    std::string args;
    bool debug, info;  // debug lines expected, info lines expected
  };
  const std::vector<Run> runs = {
      {"--log-level warn train cfg.yaml logging.per_rank_files=true", false, false},
      {"--log-level debug train cfg.yaml logging.per_rank_files=true logging.level=warn", true, true},
      {"train cfg.yaml logging.level=debug", true, true},
      {"train cfg.yaml logging.level=warn", false, false},
      {"train cfg.yaml", false, true},
  };
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string dir = w.dir.file("log" + std::to_string(i));
    fs::create_directories(dir);
    write_file(dir + "/cfg.yaml", config({{"output_dir", "out"}, {"max_steps", "1"}}));
    const RunResult r = run_shell("cd " + dir + " && timeout 300 " + ringtune_binary() + " " + runs[i].args + " < /dev/null");
    SCOPED_TRACE("ringtune " + runs[i].args + "\nstderr:\n" + r.err);
    ASSERT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.err.find(" debug] ") != std::string::npos, runs[i].debug);
    EXPECT_EQ(r.err.find(" info] ") != std::string::npos, runs[i].info);
    fs::remove_all(dir);
  }
}
