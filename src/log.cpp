// spdlog set-up: one default logger to stderr, with rank in the pattern when world_size > 1.
#include "src/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "src/error.h"

namespace ringtune {

namespace {
std::string& cli_level() {
  static std::string level;
  return level;
}
}  // namespace

void set_command_line_log_level(const std::string& level) { cli_level() = level; }
std::string log_level_for(const std::string& config_level) {
  return cli_level().empty() ? config_level : cli_level();
}

void init_logging(const std::string& level, int rank, int world_size,
                  const std::string& per_rank_dir) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw InputError("--log-level: unknown level \"" + level +
                     "\" (trace, debug, info, warn, error, off)");
  }
  std::vector<spdlog::sink_ptr> sinks;
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  if (rank != 0) console->set_level(spdlog::level::warn);
  sinks.push_back(console);
  if (!per_rank_dir.empty()) {
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        per_rank_dir + "/rank" + std::to_string(rank) + ".log", true));
  }
  auto logger = std::make_shared<spdlog::logger>("ringtune", sinks.begin(), sinks.end());
  logger->set_level(lvl);
  const std::string where =
      world_size > 1 ? " r" + std::to_string(rank) + "/" + std::to_string(world_size) : "";
  logger->set_pattern("[%H:%M:%S" + where + " %^%l%$] %v");
  spdlog::set_default_logger(logger);
}

}  // namespace ringtune
