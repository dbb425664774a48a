// CONFIG [key=value ...] for config-reading commands.
#include "src/cli/config_args.h"

#include <spdlog/spdlog.h>

#include "distributed/process_info.h"
#include "src/error.h"
#include "src/options/compat_options.h"

namespace ringtune {

Config load_command_config(const std::string& command, const std::vector<std::string>& positional) {
  if (positional.empty())
    throw InputError("ringtune " + command + ": missing CONFIG (a YAML file); see --help");
  std::vector<std::string> overrides(positional.begin() + 1, positional.end());
  for (const auto& o : overrides) {
    if (o.find('=') == std::string::npos)
      throw InputError("ringtune " + command + ": unexpected argument \"" + o +
                       "\" (overrides are key=value)");
  }
  Config config = load_config(positional[0], overrides);
  const ProcessInfo process = detect_process_info();
  if (process.rank == 0) {  // every rank loads the config; one says so
    for (const std::string& w : config.warnings()) spdlog::warn("{}", w);
    for (const std::string& w : compat_warnings(config, command == "train" ? process.world_size : 0))
      spdlog::warn("{}", w);
  }
  return config;
}

}  // namespace ringtune
