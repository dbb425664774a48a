// Shared handling of `CONFIG [key=value ...]` for the commands that read a YAML config:
// loads and validates it and answers --dump-config.
// defines: ConfigArgs, load_command_config
#pragma once
#include <string>
#include <vector>

#include "src/config/registry.h"

namespace ringtune {

// The positional arguments are CONFIG followed by key=value overrides. Throws InputError when
// CONFIG is missing or an override is malformed.
Config load_command_config(const std::string& command, const std::vector<std::string>& positional);

}  // namespace ringtune
