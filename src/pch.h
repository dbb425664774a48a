// Precompiled header for ringtune_core and the tests: the heavy, stable headers only.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>
