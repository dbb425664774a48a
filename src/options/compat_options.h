// Warnings about llmforge keys whose effect depends on the run or on another file: num_devices
// against the launcher's world size, the ZeRO stage a DeepSpeed config asks for, PEFT's
// fan_in_fan_out, min_update_steps beside num_epochs. (Keys ringtune never acts on warn at load,
// see KeyDef::not_used.)
// defines: compat_warnings
#pragma once
#include <string>
#include <vector>

namespace ringtune {

class Config;  // src/config/registry.h

// One line per key, each naming where it was set. `world_size`: ranks of this run (train), or 0
// for commands that do not train (no num_devices check).
std::vector<std::string> compat_warnings(const Config& config, int world_size);

}  // namespace ringtune
