// Logging through spdlog with a rank-aware pattern: "[12:00:01 r0/2 info] message" under a
// launcher, "[12:00:01 info] message" for a single process. Rank 0 logs to the console; other
// ranks only at warn and above unless per-rank files are requested.
#pragma once
#include <string>

namespace ringtune {

// level: trace | debug | info | warn | error | off. Throws InputError for another name.
void init_logging(const std::string& level, int rank, int world_size,
                  const std::string& per_rank_dir = "");

}  // namespace ringtune
