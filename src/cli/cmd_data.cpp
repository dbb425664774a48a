// The data commands: `tokenize` (text -> ids, JSONL in and out), `render` (how samples are
// formatted, tokenized and masked) and `prepare` (tokenized datasets cached in HDF5).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/config_args.h"
#include "src/data/jsonl_reader.h"
#include "src/io/prepared_dataset.h"
#include "src/io/run_lock.h"
#include "src/error.h"
#include "src/file_kind.h"  // defines: data_file_problem
#include "src/config/key_origins.h"
#include "src/io/atomic_file.h"
#include "src/options/data_options.h"
#include "src/options/model_options.h"
#include "src/stop_signal.h"
#include "src/train/model_setup.h"

namespace ringtune {

namespace fs = std::filesystem;

namespace {

// What needs only the config and config.json (context_length, the tokenizer's ids) is checked
// before any data is read.
void check_config_fits_model(const Config& cfg, const DataPipeline& pipe) {
  if (!cfg.is_set("initial_base_model_ckpt_path")) return;
  check_data_fits_model(model_options_from_config(cfg, /*training=*/false), *pipe.tokenizer, pipe.tokenizer_path);
}

const OptionSpec kDumpConfig{"dump-config", "", "print the resolved configuration as YAML and exit", ""};

// Output to a file (an AtomicFile: complete or absent) or stdout.
class Output {
 public:
  explicit Output(const std::string& path) {
    if (!path.empty()) {
      file_ = std::make_unique<AtomicFile>(path);
      file_->stream();  // fails now (before any work) when the file cannot be created
    }
  }
  std::ostream& stream() { return file_ ? file_->stream() : std::cout; }
  void commit() {
    if (file_) {
      file_->commit();
    } else {
      std::cout.flush();
    }
  }

 private:
  std::unique_ptr<AtomicFile> file_;
};

}  // namespace

int cmd_tokenize(const Args& args) {
  ArgParser p("tokenize", "--tokenizer PATH [--input F.jsonl] [--output F.jsonl]",
              "Each input line {\"text\": ...} becomes {\"ids\": [...]}. Text that spells special\n"
              "tokens is encoded as ordinary text unless --parse-special is given.",
              {{"tokenizer", "PATH", "tokenizer.json, tokenizer.model, or a model directory", ""},
               {"input", "FILE", "JSONL input (default: stdin)", ""},
               {"output", "FILE", "JSONL output (default: stdout)", ""},
               {"add-special-tokens", "", "prepend the tokenizer's BOS, as Hugging Face's add_special_tokens", ""},
               {"parse-special", "", "map spellings of special tokens in the text to their ids", ""}});
  if (!p.parse(args)) return 0;
  auto tok = load_tokenizer(p.get("tokenizer"));
  const bool add_bos = p.flag("add-special-tokens");
  if (add_bos && tok->special_ids().bos < 0)
    throw InputError(p.get("tokenizer") + ": --add-special-tokens: the tokenizer has no BOS token");
  const std::string in_path = p.has("input") ? p.get("input") : "/dev/stdin";
  const std::string label = p.has("input") ? in_path : "<stdin>";
  JsonlLineReader reader(in_path, size_t{64} << 20);
  if (p.has("output")) check_output_file(p.get("output"), "--output");
  Output out(p.has("output") ? p.get("output") : "");
  std::string line;
  bool too_long = false;
  while (reader.next(line, too_long)) {
    const std::string where = label + ":" + std::to_string(reader.line_number());
    if (too_long) throw InputError(where + ": line longer than 64 MiB");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers beyond double's range
      throw InputError(where + ": invalid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw InputError(where + ": expected an object with a string \"text\"");
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(tok->special_ids().bos);
    const auto body = tok->encode(j["text"].get<std::string>(), p.flag("parse-special"));
    ids.insert(ids.end(), body.begin(), body.end());
    out.stream() << nlohmann::json{{"ids", ids}}.dump() << "\n";
  }
  out.commit();
  return 0;
}

int cmd_render(const Args& args) {
  ArgParser p("render", "CONFIG [key=value ...] [--input F] [--n N] [--format text|json]",
              "Shows how samples are formatted, tokenized and masked. Text format marks the\n"
              "tokens that carry loss (green on a terminal, [[...]] otherwise); json prints one\n"
              "line per sample with text, ids and mask.",
              {{"input", "FILE", "JSONL to render (default: the config's train_path)", ""},
               {"n", "N", "samples to show", "3"},
               {"format", "FMT", "text | json", "text"},
               kDumpConfig});
  if (!p.parse(args)) return 0;
  const Config cfg = load_command_config("render", p.positional());
  if (p.flag("dump-config")) {
    std::cout << cfg.dump_yaml();
    return 0;
  }
  const std::string format = p.get("format");
  if (format != "text" && format != "json") throw InputError("--format must be text or json, got \"" + format + "\"");
  const int64_t n = p.get_int("n");
  if (n < 1) throw InputError("ringtune render: --n must be >= 1, got " + std::to_string(n));
  const DataPipeline pipe = make_data_pipeline(cfg);
  check_config_fits_model(cfg, pipe);
  const std::string input = p.has("input") ? p.get("input") : cfg.get_string("train_path");
  DatasetReader reader({input}, pipe.options, pipe.renderer, *pipe.tokenizer);
  reader.set_keep_text(true);
  spdlog::info("prompt format: {}", pipe.renderer->describe());
  const bool color = format == "text" && isatty(STDOUT_FILENO);
  EncodedSample s;
  for (int64_t i = 0; i < n && reader.next(s); ++i) {
    if (format == "json") {
      std::cout << nlohmann::json{{"text", s.text}, {"ids", s.ids}, {"mask", s.loss_mask}}.dump() << "\n";
      continue;
    }
    std::cout << "=== sample " << i << " (" << s.path << ":" << s.line << ", " << s.ids.size()
              << " tokens, prompt format: " << pipe.renderer->describe() << ")\n--- text\n"
              << s.text << "\n--- tokens (loss-carrying marked)\n";
    // Each run of equally masked tokens is shown as the text it adds to the decoding of all the
    // tokens before it (decoded alone, a SentencePiece "▁" piece would lose its space).
    std::string before;
    for (size_t t = 0; t < s.ids.size();) {
      size_t end = t;
      while (end < s.ids.size() && (s.loss_mask[end] != 0) == (s.loss_mask[t] != 0)) ++end;
      const std::string upto = pipe.tokenizer->decode(std::vector<int32_t>(s.ids.begin(), s.ids.begin() + end));
      const std::string run = upto.compare(0, before.size(), before) == 0
                                  ? upto.substr(before.size())
                                  : pipe.tokenizer->decode(std::vector<int32_t>(s.ids.begin() + t, s.ids.begin() + end));
      if (s.loss_mask[t]) std::cout << (color ? "\x1b[32m" : "[[") << run << (color ? "\x1b[0m" : "]]");
      else std::cout << run;
      before = upto;
      t = end;
    }
    std::cout << "\n--- ids\n";
    for (size_t t = 0; t < s.ids.size(); ++t) std::cout << (t ? " " : "") << s.ids[t] << (s.loss_mask[t] ? "*" : "");
    std::cout << "\n";
  }
  spdlog::info("{}", reader.report().summary());
  return 0;
}

int cmd_prepare(const Args& args) {
  ArgParser p("prepare", "CONFIG [key=value ...]",
              "Tokenizes train_path (and valid_path, test_path) into HDF5 caches under\n"
              "output_dir/prepared/, reusing a cache whose data, tokenizer and format fingerprints\n"
              "still match. `train` runs this implicitly.",
              {{"force", "", "rebuild even if the cache matches", ""}, kDumpConfig});
  if (!p.parse(args)) return 0;
  const Config cfg = load_command_config("prepare", p.positional());
  if (p.flag("dump-config")) {
    std::cout << cfg.dump_yaml();
    return 0;
  }
  if (another_rank_leaves_it_to_rank0("prepare")) return 0;
  check_output_dir(cfg.get_string("output_dir"), KeyOrigins(cfg).where("output_dir"));
  install_stop_handlers();  // a stop signal ends the preparation cleanly (Interrupted)
  const DataPipeline pipe = make_data_pipeline(cfg);
  check_config_fits_model(cfg, pipe);
  std::cout << "prompt format: " << pipe.renderer->describe() << "\n";
  const KeyOrigins origins(cfg);
  std::vector<const char*> splits;
  for (const char* split : {"train", "valid", "test"}) {
    const std::string key = std::string(split) + "_path";
    if (!cfg.is_set(key)) continue;
    const std::string problem = data_file_problem(cfg.get_string(key));  // every split before any work
    if (!problem.empty()) origins.fail(key, cfg.get_string(key) + ": " + problem);
    splits.push_back(split);
  }
  // A split refused part-way leaves no cache of this command behind, nor the directories it made.
  const fs::path out = cfg.get_string("output_dir"), prepared = fs::path(prepared_dataset_path(out.string(), "train")).parent_path();
  std::error_code ec;
  const bool had_out = fs::exists(out, ec), had_prepared = fs::exists(prepared, ec);
  // The run lock of output_dir, as train takes it: a cache is not rebuilt under a running train.
  const std::string created_top = outermost_missing_directory(out.string());
  fs::create_directories(out, ec);
  if (ec) origins.fail("output_dir", out.string() + ": cannot be created (" + ec.message() + ")");
  const RunLock lock(out.string(), origins.where("output_dir"), created_top);
  std::vector<std::string> built;
  try {
    for (const char* split : splits) {
      auto r = prepare_dataset(pipe, {cfg.get_string(std::string(split) + "_path")},
                               prepared_dataset_path(out.string(), split), p.flag("force"));
      if (r.created) built.push_back(r.path);
      std::cout << split << ": " << r.path << (r.reused ? " (up to date)" : " (built: " + r.reason + ")")
                << "\n  " << r.stats.describe() << "\n";
      if (!r.reused) std::cout << "  " << r.report.summary() << "\n";
    }
  } catch (const Error&) {
    for (const auto& f : built) fs::remove(f, ec);
    if (!had_prepared && fs::is_empty(prepared, ec)) fs::remove(prepared, ec);
    if (!had_out && fs::is_empty(out, ec)) fs::remove(out, ec);
    throw;
  }
  return 0;
}

}  // namespace ringtune
