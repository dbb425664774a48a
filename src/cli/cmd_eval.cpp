// `ringtune eval CONFIG [--checkpoint P] [--output FILE] [key=value ...]`: validation loss and
// perplexity on valid_path, and with eval.generation: exact_match the accuracy of greedy replies
// on test_path (else valid_path); a JSON summary and the per-sample generations as JSONL.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/config_args.h"
#include "src/config/registry.h"
#include "src/data/data_pipeline.h"
#include "src/io/prepared_dataset.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/options/eval_options.h"
#include "src/train/evaluate.h"
#include "src/train/model_setup.h"
#include "src/train/packing.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// `text` as the whole of `path` (atomically), creating its directory if needed.
void write_text_file(const std::string& path, const std::string& text) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  atomic_write(path, text);
}

}  // namespace

int cmd_eval(const Args& args) {
  ArgParser p("eval", "CONFIG [--checkpoint P] [--output FILE] [key=value ...]",
              "Evaluates the training config's model: the base model of initial_base_model_ckpt_path\n"
              "with the weights of --checkpoint (a PEFT adapter directory, a checkpoint .h5 or a\n"
              "training output_dir; default: output_dir's latest checkpoint if there is one, else\n"
              "the base model alone). Prints the loss and perplexity over valid_path, and with\n"
              "eval.generation: exact_match the share of greedy replies on test_path (else\n"
              "valid_path) equal to the reference after trimming whitespace. Writes a JSON summary\n"
              "and the generations (JSONL: prompt, reference, generated, match).",
              {{"checkpoint", "P", "adapter dir, checkpoint .h5, output_dir, or `none` for the base model", ""},
               {"output", "FILE", "JSON summary (default OUTPUT_DIR/eval.json); generations go beside it", ""},
               {"limit", "N", "generation: evaluate at most N samples (0: all)", "0"},
               {"device", "DEV", "cpu, cuda, cuda:N, or auto (a GPU when one is visible)", "cpu"},
               {"dump-config", "", "print the resolved configuration as YAML and exit", ""}});
  if (!p.parse(args)) return 0;
  if (another_rank_leaves_it_to_rank0("eval")) return 0;
  const Config cfg = load_command_config("eval", p.positional());
  if (p.flag("dump-config")) {
    std::cout << cfg.dump_yaml();
    return 0;
  }
  const int64_t limit = p.get_int("limit");
  if (limit < 0) throw InputError("--limit must be >= 0");
  EvalOptions o = eval_options_from_config(cfg);
  const std::string& out_dir = o.output_dir;
  const std::string summary_path = p.has("output") ? p.get("output") : (fs::path(out_dir) / "eval.json").string();
  std::string gen_path = summary_path;
  if (gen_path.size() > 5 && gen_path.compare(gen_path.size() - 5, 5, ".json") == 0) gen_path.resize(gen_path.size() - 5);
  gen_path += "_generations.jsonl";
  // Where eval writes, checked before any work (the summary, and the prepared cache in output_dir).
  check_output_dir(out_dir, o.model.origins.where("output_dir"));
  if (p.has("output")) {
    check_output_file(summary_path, "--output");
    check_output_file(gen_path, "--output (its generations file)");
  }

  // Model and weights.
  const DataPipeline pipe = make_data_pipeline(o.data);
  check_data_fits_model(o.model, *pipe.tokenizer, pipe.tokenizer_path);
  const std::string& base = o.model.base_dir;
  std::string weights = p.has("checkpoint") ? p.get("checkpoint") : "";
  if (!p.has("checkpoint") && !list_checkpoints(out_dir).empty()) weights = out_dir;
  if (weights == "none") weights.clear();
  o.model.adapter = weights;
  o.model.device = resolve_device(p.get("device"));
  const ModelSetup setup = setup_model(o.model);
  LlamaForCausalLM model = setup.model;
  const AdapterInfo& adapter = setup.adapter;
  if (weights.empty()) {
    spdlog::info("evaluating the base model {} alone{}", base,
                 p.has("checkpoint") ? "" : " (no checkpoint in " + out_dir + "/checkpoints)");
  } else {
    spdlog::info("evaluating {} on the base model {}", adapter.describe(), base);
    if (!adapter.config_yaml.empty()) {
      const Config stored = load_config_from_string(adapter.config_yaml, {}, adapter.file + " (stored config)");
      const std::string trained_on = stored.get_string("initial_base_model_ckpt_path");
      if (fs::weakly_canonical(trained_on) != fs::weakly_canonical(base))
        spdlog::warn("{} was trained on {}, evaluated on {}", adapter.file, trained_on, base);
    }
  }
  model->eval();
  const LlamaConfig& mc = model->config();
  const std::string& dtype = o.model.dtype;

  nlohmann::json summary = {{"config", o.config_name},
                            {"base_model", base},
                            {"weights", weights.empty() ? nlohmann::json(nullptr) : nlohmann::json(adapter.file)},
                            {"weights_kind", weights.empty() ? "base" : adapter.kind},
                            {"dtype", dtype}};
  if (adapter.step >= 0) summary["checkpoint_step"] = adapter.step;

  // Loss and perplexity on valid_path.
  if (!o.valid_path.empty()) {
    const std::string& valid_path = o.valid_path;
    const std::string cache = prepared_dataset_path(out_dir, "valid");
    fs::create_directories(fs::path(cache).parent_path());
    prepare_dataset(pipe, {valid_path}, cache);
    const PreparedDataset valid = PreparedDataset::load(cache);
    check_token_ids(valid.ids, mc.vocab_size, valid_path);
    const int32_t pad_id = padding_id(*pipe.tokenizer);
    check_token_ids(std::vector<int32_t>{pad_id}, mc.vocab_size, pipe.tokenizer_path + " (padding id)");
    const auto seqs = pack_in_file_order(valid, o.data.options.context_length, o.packing, pad_id);
    const LossEval le = evaluate_loss(model, seqs, o.batch_size);
    char line[256];
    std::snprintf(line, sizeof(line), "valid_loss %.6f\nvalid_perplexity %.6f\n", le.loss, le.perplexity);
    std::cout << line << std::flush;
    spdlog::info("{}: loss {:.4f} perplexity {:.3f} over {} supervised tokens in {} samples", valid_path, le.loss,
                 le.perplexity, le.supervised_tokens, valid.size());
    summary["valid_path"] = valid_path;
    summary["valid_loss"] = std::isfinite(le.loss) ? nlohmann::json(le.loss) : nlohmann::json(nullptr);
    summary["valid_perplexity"] = std::isfinite(le.perplexity) ? nlohmann::json(le.perplexity) : nlohmann::json(nullptr);
    summary["valid_supervised_tokens"] = le.supervised_tokens;
    summary["valid_samples"] = valid.size();
  } else {
    spdlog::info("no valid_path: no loss or perplexity");
  }

  // Exact match.
  if (o.exact_match) {
    const std::string& test_path = o.test_path;
    ExactMatchOptions eo;
    eo.max_new_tokens = o.max_new_tokens;
    eo.limit = limit;
    const ExactMatchResult em = evaluate_exact_match(model, pipe, test_path, eo);
    char line[256];
    std::snprintf(line, sizeof(line), "exact_match %.4f (%lld/%lld)\n", em.accuracy, static_cast<long long>(em.correct),
                  static_cast<long long>(em.total));
    std::cout << line << std::flush;
    if (em.skipped) spdlog::warn("{}: {} invalid samples skipped", test_path, em.skipped);
    std::string lines;
    for (const auto& r : em.records) {
      lines += json_text({{"line", r.line},
                          {"prompt", r.prompt},
                          {"reference", r.reference},
                          {"generated", r.generated},
                          {"match", r.match},
                          {"new_tokens", r.new_tokens},
                          {"stopped", r.stopped}}) +
               "\n";
    }
    write_text_file(gen_path, lines);
    summary["exact_match"] = {{"path", test_path}, {"accuracy", em.accuracy}, {"correct", em.correct},
                              {"total", em.total}, {"skipped", em.skipped}, {"max_new_tokens", eo.max_new_tokens},
                              {"generations", gen_path}};
    spdlog::info("exact match {}/{} on {}; generations in {}", em.correct, em.total, test_path, gen_path);
  }
  write_text_file(summary_path, json_text(summary, 2) + "\n");
  spdlog::info("summary in {}", summary_path);
  return 0;
}

}  // namespace ringtune
