// Force-included into the ringtune sources of the fuzz build (CMakeLists.txt): what the main
// build's precompiled header (src/pch.h) gives every source, minus libtorch.
#pragma once
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>
