// `ringtune train CONFIG [key=value ...]`: the main job.
#include <spdlog/spdlog.h>

#include <iostream>

#include "distributed/process_group.h"
#include "distributed/process_info.h"
#include "src/cli/args.h"
#include "src/error.h"
#include "src/exit_status.h"
#include "src/log.h"
#include "src/cli/commands.h"
#include "src/cli/config_args.h"
#include "src/config/registry.h"
#include "src/options/train_options.h"
#include "src/stop_signal.h"
#include "src/train/memory_plan.h"
#include "src/train/trainer.h"

namespace ringtune {

int cmd_train(const Args& args) {
  ArgParser p("train", "CONFIG [key=value ...]",
              "Fine-tunes the model of initial_base_model_ckpt_path on train_path: LoRA when\n"
              "lora_config.r is set, full fine-tuning otherwise. Prepares (tokenizes) the data if\n"
              "needed, writes metrics.jsonl and the result (adapter/ or model/) under output_dir.\n"
              "Keys: `ringtune train --help-keys [GROUP]`.",
              {{"dump-config", "", "print the resolved configuration as YAML and exit", ""},
               {"help-keys", "", "describe every config key (optionally of one group: --help-keys GROUP)", ""}});
  if (!p.parse(args)) return 0;
  if (p.flag("help-keys")) {
    std::cout << registry_help(p.positional().empty() ? "" : p.positional()[0]);
    return 0;
  }
  const Config cfg = load_command_config("train", p.positional());
  if (p.flag("dump-config")) {
    std::cout << cfg.dump_yaml();
    return 0;
  }
  TrainOptions options = train_options_from_config(cfg);
  {
    // Before any work: the memory estimate (one line), train_batch_size_per_device auto, and a
    // memory_budget below the estimate refused.
    const ProcessInfo proc = detect_process_info();
    // The config's logging.level from here on, unless --log-level was given (it wins).
    init_logging(log_level_for(options.log_level), proc.rank, proc.world_size);
    std::string log;
    plan_memory(options, proc.world_size, proc.local_size, &log);
    for (size_t at = 0; proc.rank == 0 && at < log.size();) {
      const size_t end = log.find('\n', at);
      const std::string line = log.substr(at, end - at);
      if (line.rfind("warning: ", 0) == 0) spdlog::warn("{}", line.substr(9));
      else spdlog::info("{}", line);
      at = end == std::string::npos ? log.size() : end + 1;
    }
  }
  try {
    run_training(options);
  } catch (const StopRequested&) {
    return 143;  // graceful stop after SIGTERM; the checkpoint is named in the log
  } catch (const std::exception& e) {
    // With several ranks, the others may be waiting in a collective: report and take them all
    // down (MPI_Abort) rather than return and leave them hanging.
    if (ProcessGroup::initialized() && ProcessGroup::init().size() > 1) {
      const auto s = exit_status(e);  // the code and line main() would give (src/exit_status.h)
      print_error_line(s.prefix + "rank " + std::to_string(ProcessGroup::init().rank()) + ": " + s.message);
      ProcessGroup::init().abort(s.code);
    }
    throw;
  }
  return 0;
}

}  // namespace ringtune
