// Logging through spdlog with a rank-aware pattern: "[12:00:01 r0/2 info] message" under a
// launcher, "[12:00:01 info] message" for a single process. Rank 0 logs to the console; other
// ranks only at warn and above unless per-rank files are requested.
#pragma once
#include <string>

namespace ringtune {

// level: trace | debug | info | warn | error | off. Throws InputError for another name.
void init_logging(const std::string& level, int rank, int world_size,
                  const std::string& per_rank_dir = "");

// --log-level on the command line wins over a config's logging.level: main records the flag once
// (when given) before any command runs, and log_level_for(config's level) is the level to use.
void set_command_line_log_level(const std::string& level);
std::string log_level_for(const std::string& config_level);

}  // namespace ringtune
