// ringtune: the command-line entry point. Dispatches subcommands and turns errors into exit codes:
// 0 ok, 2 bad input (one line naming the file and key/line), 1 an environment fault (no space, a
// dead peer; one line) or an internal error, 128 + N ended by signal N (143: SIGTERM).
#include <spdlog/spdlog.h>

#include <exception>
#include <iostream>
#include <map>
#include <stdexcept>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cpu_pool.h"
#include "distributed/process_info.h"
#include "model/cpu_bf16.h"  // defines: cpu_bf16_products_widened
#include "src/error.h"
#include "src/exit_status.h"
#include "src/log.h"
#include "src/stop_signal.h"

namespace {

struct Command {
  int (*run)(const ringtune::Args&);
  const char* summary;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table = {
      {"logits", {ringtune::cmd_logits, "forward pass over token ids; writes logits and mean loss"}},
      {"generate", {ringtune::cmd_generate, "greedy or sampled decoding with a KV cache"}},
      {"inspect", {ringtune::cmd_inspect, "what a model directory, safetensors or prepared file holds"}},
      {"tokenize", {ringtune::cmd_tokenize, "text -> token ids (JSONL in, JSONL out)"}},
      {"render", {ringtune::cmd_render, "how samples are formatted, tokenized and masked"}},
      {"prepare", {ringtune::cmd_prepare, "tokenize datasets into HDF5 caches"}},
      {"estimate", {ringtune::cmd_estimate, "peak memory per rank of a training config, and the alternatives"}},
      {"train", {ringtune::cmd_train, "fine-tune (LoRA or full) on a YAML config"}},
      {"export", {ringtune::cmd_export, "checkpoint -> PEFT adapter or merged Hugging Face model"}},
      {"eval", {ringtune::cmd_eval, "validation loss/perplexity and exact match of greedy replies"}},
      {"init-model", {ringtune::cmd_init_model, "new random model + tokenizer trained on a corpus"}},
      {"report", {ringtune::cmd_report, "report.html (SVG charts) of a training run's metrics"}},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "ringtune: fine-tune Llama-family models (LoRA or full) from one process to mpirun.\n\n"
               "usage: ringtune [--log-level LEVEL] <command> [args]\n\ncommands:\n";
  for (const auto& [name, c] : commands()) {
    std::string left = "  " + name;
    left.resize(14, ' ');
    out << left << c.summary << "\n";
  }
  out << "\n`ringtune <command> --help` describes a command's options.\n"
               "Exit codes: 0 ok, 2 bad input, 1 an environment fault (no space, a dead peer) or an internal\n"
               "error, 143 stopped by SIGTERM (train writes a checkpoint first; 130 for SIGINT elsewhere).\n";
}

}  // namespace

int main(int argc, char** argv) {
  ringtune::install_cpu_pool();  // before the first tensor (src/cpu_pool.h; RINGTUNE_CPU_POOL=0: off)
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string level = "info";
  bool level_given = false;
  try {
    // --log-level may stand anywhere.
    for (size_t i = 0; i < args.size();) {
      if (args[i] == "--log-level" && i + 1 < args.size()) {
        level = args[i + 1];
        level_given = true;
        args.erase(args.begin() + i, args.begin() + i + 2);
      } else if (args[i].rfind("--log-level=", 0) == 0) {
        level = args[i].substr(12);
        level_given = true;
        args.erase(args.begin() + i);
      } else {
        ++i;
      }
    }
    const auto proc = ringtune::detect_process_info();
    ringtune::init_logging(level, proc.rank, proc.world_size);
    if (level_given) ringtune::set_command_line_log_level(level);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      print_usage(args.empty() ? std::cerr : std::cout);  // no command is a usage error: stderr, exit 2
      return args.empty() ? 2 : 0;
    }
    auto it = commands().find(args[0]);
    if (it == commands().end()) {
      std::vector<std::string> names;
      for (const auto& [n, c] : commands()) names.push_back(n);
      auto near = ringtune::closest_match(args[0], names);
      throw ringtune::InputError("unknown command \"" + args[0] + "\"" +
                                 (near ? " (did you mean \"" + *near + "\"?)" : "") +
                                 "; run `ringtune --help`");
    }
    try {  // RINGTUNE_CPU_BF16_PRODUCTS, read once, checked before any command uses it
      (void)ringtune::cpu_bf16_products_widened();
    } catch (const std::invalid_argument& e) {
      throw ringtune::InputError(e.what());
    }
    const int rc = it->second.run(ringtune::Args(args.begin() + 1, args.end()));
    if (ringtune::cpu_pool_installed()) {
      const auto st = ringtune::cpu_pool_stats();
      spdlog::debug("CPU block pool: peak {:.1f} MiB, {} blocks mapped, {} reused, {} unmapped; {:.1f} MiB live, {:.1f} MiB cached",
                    st.peak / 1048576.0, st.maps, st.reuses, st.unmaps, st.live / 1048576.0, st.cached / 1048576.0);
    }
    return rc;
  } catch (const std::exception& e) {
    const auto s = ringtune::exit_status(e);  // src/exit_status.h: the code and line for each kind
    ringtune::print_error_line(s.prefix + s.message);
    return s.code;
  }
}
