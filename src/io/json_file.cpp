// See json_file.h.
#include "src/io/json_file.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "src/error.h"

namespace ringtune {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open (no such file or not readable)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse errors, and numbers beyond double's range
    throw InputError(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace ringtune
