// `ringtune init-model`: a new, randomly initialised Llama-family model directory for the
// quickstart: a byte-fallback BPE SentencePiece tokenizer trained on a corpus, config.json and
// model.safetensors. Everything is built in DIR.tmp-XXXXXX and renamed to DIR at the end, so a
// failure leaves nothing half-written.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>
#include <regex>

#include "model/llama.h"                  // defines: LlamaForCausalLM, init_weights
#include "src/cli/args.h"                 // defines: ArgParser
#include "src/cli/commands.h"             // declares: cmd_init_model
#include "src/data/chat_template.h"       // defines: parse_chat_template
#include "src/io/hf_model.h"              // defines: write_hf_config
#include "src/io/atomic_file.h"           // defines: ScratchDir, install_directory, atomic_write
#include "src/error.h"                    // defines: InputError
#include "src/io/safetensors.h"           // defines: write_safetensors
#include "src/utf8.h"                      // defines: utf8::first_invalid
#include "src/tokenizer/spm_processor.h"  // defines: SpmProcessor, spm_train
#include "src/train/memory_estimate.h"    // defines: available_memory_bytes, format_bytes

namespace fs = std::filesystem;

namespace ringtune {

namespace {

// ---------------------------------------------------------------------------------------------
// Options

struct InitModelOptions {
  std::string output, corpus, model_type;
  std::string normalization;                // nmt_nfkc | identity
  std::vector<std::string> special_tokens;  // control pieces after <unk> <s> </s>
  std::string chat_template;                // Jinja text for tokenizer_config.json, or empty
  int64_t vocab_size = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, intermediate = 0;
  int64_t context = 0;
  uint64_t seed = 0;
  bool force = false;
};

void require_positive(const char* name, int64_t value) {
  if (value <= 0)
    throw InputError("ringtune init-model: --" + std::string(name) + " must be positive, got " +
                     std::to_string(value));
}

// SwiGLU's usual width: 8/3 of hidden, rounded up to a multiple of 16.
int64_t auto_intermediate(int64_t hidden) {
  const int64_t raw = (8 * hidden + 2) / 3;
  return (raw + 15) / 16 * 16;
}

bool is_nonempty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && !fs::is_empty(p, ec);
}

// DIR as an absolute path without "." / ".." parts or a trailing separator.
fs::path output_path(const std::string& output) {
  fs::path p = fs::absolute(output).lexically_normal();
  if (!p.has_filename() && p != p.root_path()) p = p.parent_path();
  return p;
}

// --special-tokens: comma-separated spellings, each without whitespace, not <s> </s> <unk>, once.
std::vector<std::string> parse_special_tokens(const std::string& list) {
  std::vector<std::string> out;
  if (list.empty()) return out;
  size_t begin = 0;
  while (true) {
    const size_t end = std::min(list.find(',', begin), list.size());
    const std::string t = list.substr(begin, end - begin);
    const auto bad = [&](const std::string& why) {
      return InputError("ringtune init-model: --special-tokens \"" + t + "\" " + why);
    };
    if (t.empty()) throw InputError("ringtune init-model: --special-tokens has an empty entry");
    if (std::any_of(t.begin(), t.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
      throw bad("contains whitespace");
    if (t == "<s>" || t == "</s>" || t == "<unk>") throw bad("is already a special token");
    if (std::find(out.begin(), out.end(), t) != out.end()) throw bad("is listed twice");
    out.push_back(t);
    if (end == list.size()) break;
    begin = end + 1;
  }
  return out;
}

// --chat-template FILE: its text, checked to parse as a chat template (line:column otherwise).
std::string read_chat_template_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("ringtune init-model: --chat-template " + path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.empty()) throw InputError("ringtune init-model: --chat-template " + path + ": the file is empty");
  const size_t bad = utf8::first_invalid(text);  // tokenizer_config.json holds it as a JSON string
  if (bad != std::string::npos)
    throw InputError("ringtune init-model: --chat-template " + path + ": not UTF-8 (byte " + std::to_string(bad) + ")");
  parse_chat_template({text, "ringtune init-model: --chat-template " + path});
  return text;
}

// Parsed and checked options; InputError naming the option for anything unusable.
LlamaConfig make_config(const InitModelOptions& o, int64_t vocab);

InitModelOptions check_options(const ArgParser& p) {
  InitModelOptions o;
  o.output = p.get("output");
  o.corpus = p.get("corpus");
  o.model_type = p.get("model-type");
  o.normalization = p.get("normalization");
  o.vocab_size = p.get_int("vocab-size");
  o.hidden = p.get_int("hidden");
  o.layers = p.get_int("layers");
  o.heads = p.get_int("heads");
  o.kv_heads = p.get_int("kv-heads");
  o.intermediate = p.get_int("intermediate");
  o.context = p.get_int("context");
  const int64_t seed = p.get_int("seed");
  o.force = p.flag("force");
  if (p.has("special-tokens")) o.special_tokens = parse_special_tokens(p.get("special-tokens"));
  if (p.has("chat-template")) o.chat_template = read_chat_template_file(p.get("chat-template"));

  if (o.model_type != "llama" && o.model_type != "mistral" && o.model_type != "qwen2")
    throw InputError("ringtune init-model: --model-type \"" + o.model_type +
                     "\" is not supported (llama, mistral, qwen2)");
  if (o.normalization != "nmt_nfkc" && o.normalization != "identity")
    throw InputError("ringtune init-model: --normalization \"" + o.normalization +
                     "\" is not supported (nmt_nfkc, identity)");
  // 3 special pieces and 256 byte-fallback pieces come before any learned piece.
  if (o.vocab_size < 260)
    throw InputError("ringtune init-model: --vocab-size must be at least 260 (3 special tokens and "
                     "256 byte-fallback pieces come first), got " + std::to_string(o.vocab_size));
  require_positive("hidden", o.hidden);
  require_positive("layers", o.layers);
  require_positive("heads", o.heads);
  require_positive("kv-heads", o.kv_heads);
  require_positive("context", o.context);
  if (seed < 0) throw InputError("ringtune init-model: --seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  if (o.intermediate < 0)
    throw InputError("ringtune init-model: --intermediate must be positive (or 0 for 8/3 of --hidden), got " +
                     std::to_string(o.intermediate));
  if (o.intermediate == 0) o.intermediate = auto_intermediate(o.hidden);
  // The shape (its vocabulary is at most --vocab-size; sizes past any model first, then heads that
  // divide --hidden and kv-heads that divide --heads, named by flag), and memory for it, before
  // any work.
  const int64_t params = make_config(o, o.vocab_size).parameter_count();
  const int64_t need = 2 * 4 * params;  // float32 weights and the copy written out
  const int64_t avail = available_memory_bytes();
  if (avail > 0 && need > avail)
    throw InputError("ringtune init-model: the model has " + std::to_string(params) + " parameters; making it needs about " +
                     format_bytes(need) + " and this machine has " + format_bytes(avail) + " available");

  std::error_code ec;
  if (!fs::is_regular_file(o.corpus, ec))
    throw InputError("ringtune init-model: --corpus " + o.corpus + ": no such file");
  if (fs::file_size(o.corpus, ec) == 0 || ec)
    throw InputError("ringtune init-model: --corpus " + o.corpus + ": the file is empty");
  const fs::path out = output_path(o.output);
  const fs::path up = fs::current_path().lexically_relative(out);
  if (out == out.root_path() || (!up.empty() && *up.begin() != ".."))
    throw InputError("ringtune init-model: --output " + o.output +
                     " is the current directory or above it; name a new directory");
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw InputError("ringtune init-model: --output " + o.output + " exists and is not a directory");
  if (is_nonempty_dir(out) && !o.force)
    throw InputError("ringtune init-model: --output " + o.output +
                     " exists and is not empty; pass --force to replace it");
  return o;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

// Changes the working directory while alive.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const fs::path& dir) : saved_(fs::current_path()) { fs::current_path(dir); }
  ~WorkingDirectory() {
    std::error_code ec;
    fs::current_path(saved_, ec);
  }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  fs::path saved_;
};

// Trains DIR/tokenizer.model. sentencepiece splits its flag string on spaces, so it runs inside a
// scratch directory on a link to the corpus, with relative paths: paths with spaces or '=' never
// reach the flags.
void train_tokenizer(const InitModelOptions& o, const fs::path& dir) {
  ScratchDir work((fs::temp_directory_path() / "ringtune-spm-").string());
  fs::create_symlink(fs::absolute(o.corpus), fs::path(work.path()) / "corpus.txt");
  const fs::path prefix = fs::path(work.path()) / "tokenizer";
  // The model file records --input and --model_prefix; relative to the scratch directory they
  // are the same on every run, so the same corpus gives the same tokenizer.model bytes.
  const WorkingDirectory cwd(work.path());
  std::string control;
  for (const auto& t : o.special_tokens) control += (control.empty() ? "" : ",") + t;
  const std::string flags = "--input=corpus.txt --model_prefix=tokenizer"
                            " --vocab_size=" + std::to_string(o.vocab_size) +
                            (control.empty() ? "" : " --control_symbols=" + control) +
                            // identity: text as written, newlines and runs of spaces kept (Llama 2's
                            // tokenizer); nmt_nfkc also folds whitespace, as sentencepiece's default.
                            (o.normalization == "identity"
                                 ? " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                                 : " --normalization_rule_name=nmt_nfkc") +
                            " --model_type=bpe --character_coverage=1.0 --byte_fallback=true"
                            " --bos_id=1 --eos_id=2 --unk_id=0 --pad_id=-1"
                            " --input_sentence_size=2000000 --shuffle_input_sentence=true"
                            " --max_sentence_length=16384 --num_threads=2 --minloglevel=3";
  spdlog::debug("spm_train {}", flags);
  try {
    spm_train(flags);
  } catch (const InputError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    // "Vocabulary size is smaller than required_chars. 300 vs 304. ..."
    std::smatch m;
    static const std::regex too_small("required_chars\\. (\\d+) vs (\\d+)");
    if (std::regex_search(msg, m, too_small))
      throw InputError("ringtune init-model: --vocab-size " + m[1].str() + " is too small for " + o.corpus +
                       ": its characters need at least " + m[2].str() +
                       " pieces (3 special, 256 bytes, one per distinct character)");
    if (msg.find("Vocabulary size too high") != std::string::npos)
      throw InputError("ringtune init-model: --vocab-size " + std::to_string(o.vocab_size) +
                       " is too large for " + o.corpus + " (" + msg + ")");
    throw InputError("ringtune init-model: training the tokenizer on --corpus " + o.corpus +
                     " failed: " + msg);
  }
  atomic_copy(prefix.string() + ".model", (dir / "tokenizer.model").string());
  // tokenizer.vocab stays in the scratch directory, removed with it.
}

void write_tokenizer_config(const fs::path& dir, const InitModelOptions& o) {
  nlohmann::ordered_json j = {
      {"tokenizer_class", "LlamaTokenizer"},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"unk_token", "<unk>"},
      {"pad_token", nullptr},
      {"add_bos_token", true},
      {"add_eos_token", false},
      {"model_max_length", o.context},
  };
  if (!o.special_tokens.empty()) j["additional_special_tokens"] = o.special_tokens;
  if (!o.chat_template.empty()) j["chat_template"] = o.chat_template;
  atomic_write((dir / "tokenizer_config.json").string(), j.dump(2) + "\n");
}

// ---------------------------------------------------------------------------------------------
// Model

// LlamaConfig::validate names config.json's fields; init-model's user gave flags, so its message
// names those ("--hidden = 200000: must be <= 131072"), whole words only.
std::string as_flags(std::string message) {
  static const std::pair<const char*, const char*> names[] = {
      {"vocab_size", "--vocab-size"},          {"hidden_size", "--hidden"},    {"num_hidden_layers", "--layers"},
      {"num_attention_heads", "--heads"},      {"num_key_value_heads", "--kv-heads"},
      {"intermediate_size", "--intermediate"}, {"max_position_embeddings", "--context"},
      {"head_dim", "head_dim (--hidden / --heads)"}};
  const auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  for (const auto& [field, flag] : names) {
    const std::string f = field;
    for (size_t at = message.find(f); at != std::string::npos; at = message.find(f, at)) {
      const bool whole = (at == 0 || !word(message[at - 1])) && (at + f.size() == message.size() || !word(message[at + f.size()]));
      if (!whole) {
        at += f.size();
        continue;
      }
      message.replace(at, f.size(), flag);
      at += std::strlen(flag);
    }
  }
  return message;
}

LlamaConfig make_config(const InitModelOptions& o, int64_t vocab) {
  LlamaConfig c;
  c.model_type = o.model_type;
  c.vocab_size = vocab;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.intermediate;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads;
  c.max_position_embeddings = o.context;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  c.attention_bias = o.model_type == "qwen2";
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw InputError("ringtune init-model: " + as_flags(e.what()));
  }
  return c;
}


int64_t write_weights(const fs::path& dir, const LlamaConfig& c, uint64_t seed) {
  LlamaForCausalLM model(c);
  model->init_weights(seed, 0.02);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  int64_t count = 0;
  for (const auto& p : model->named_parameters()) {
    tensors.emplace_back(p.key(), p.value().detach());
    count += p.value().numel();
  }
  write_safetensors((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
  return count;
}

}  // namespace

int cmd_init_model(const Args& args) {
  ArgParser p("init-model", "--output DIR --corpus FILE [options]",
              "Creates a new randomly initialised model directory: trains a byte-fallback BPE\n"
              "SentencePiece tokenizer on FILE (tokenizer.model, tokenizer_config.json), and writes\n"
              "config.json and model.safetensors of a decoder with embeddings tied to the output.\n"
              "DIR is built beside itself and renamed into place when complete.",
              {{"output", "DIR", "model directory to create", ""},
               {"corpus", "FILE", "plain-text file (one sentence or paragraph a line) for the tokenizer", ""},
               {"vocab-size", "N", "tokenizer pieces (at least 260; fewer if the corpus runs out of merges)", "512"},
               {"hidden", "N", "hidden size", "64"},
               {"layers", "N", "decoder layers", "4"},
               {"heads", "N", "attention heads (must divide --hidden)", "4"},
               {"kv-heads", "N", "key/value heads (must divide --heads)", "2"},
               {"intermediate", "N", "MLP width; 0: 8/3 * hidden rounded up to a multiple of 16", "0"},
               {"context", "N", "max_position_embeddings", "256"},
               {"seed", "S", "weight initialisation seed", "0"},
               {"model-type", "TYPE", "llama | mistral | qwen2", "llama"},
               {"normalization", "RULE", "tokenizer text normalization: nmt_nfkc (newlines and runs of spaces become one space) | identity (text kept as written, as Llama 2's tokenizer; needed for templates that end a header with a newline)", "nmt_nfkc"},
               {"special-tokens", "LIST", "comma-separated control tokens for chat formats (e.g. <|im_start|>,<|im_end|>): ids 3, 4, ...; text never encodes to them, templates do", ""},
               {"chat-template", "FILE", "a Jinja chat template written into tokenizer_config.json", ""},
               {"force", "", "replace DIR if it exists and is not empty", ""}});
  if (!p.parse(args)) return 0;
  if (!p.positional().empty())
    throw InputError("ringtune init-model: unexpected argument \"" + p.positional()[0] + "\"; see --help");
  const auto start = std::chrono::steady_clock::now();
  const InitModelOptions o = check_options(p);

  const fs::path target = output_path(o.output);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec)
    throw InputError("ringtune init-model: --output " + o.output + ": cannot create " +
                     target.parent_path().string() + ": " + ec.message());
  ScratchDir build(target.string() + ".tmp-");
  const fs::path dir(build.path());

  train_tokenizer(o, dir);
  const int64_t vocab = SpmProcessor((dir / "tokenizer.model").string()).piece_size();
  write_tokenizer_config(dir, o);
  const LlamaConfig c = make_config(o, vocab);
  write_hf_config(dir.string(), c);
  const int64_t params = write_weights(dir, c, o.seed);
  install_directory(build, target.string());

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "created " << o.output << ": " << c.model_type << " decoder, " << c.num_hidden_layers
            << " layers, hidden " << c.hidden_size << ", intermediate " << c.intermediate_size
            << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads << "), context "
            << c.max_position_embeddings << ", embeddings tied\n"
            << "tokenizer: sentencepiece bpe with byte fallback, vocab " << vocab
            << (vocab < o.vocab_size ? " (corpus ran out of merges before " + std::to_string(o.vocab_size) + ")" : "")
            << "\nparameters: " << params << ", seed " << o.seed << "\n";
  char t[32];
  std::snprintf(t, sizeof(t), "%.2f", secs);
  std::cout << "files: config.json model.safetensors tokenizer.model tokenizer_config.json (" << t
            << " s)" << std::endl;
  return 0;
}

}  // namespace ringtune
