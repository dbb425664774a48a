// CONFIG [key=value ...] for config-reading commands.
#include "src/cli/config_args.h"

#include "src/error.h"

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
  return load_config(positional[0], overrides);
}

}  // namespace ringtune
