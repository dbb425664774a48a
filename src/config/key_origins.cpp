// Key origins for late messages; see key_origins.h.
#include "src/config/key_origins.h"

#include "src/config/registry.h"
#include "src/error.h"

namespace ringtune {

KeyOrigins::KeyOrigins(const Config& config) : source_(config.source_name()) {
  for (const KeyDef& k : config.registry().keys()) {
    std::string d = config.origin(k.name).describe();
    if (!d.empty()) origin_[k.name] = std::move(d);
  }
}

std::string KeyOrigins::origin(const std::string& key) const {
  const auto it = origin_.find(key);
  return it != origin_.end() ? it->second : source_;
}

std::string KeyOrigins::where(const std::string& key) const {
  const std::string file = origin(key);
  return file.empty() ? key : file + ": " + key;
}

void KeyOrigins::fail(const std::string& key, const std::string& why) const {
  throw InputError(where(key) + ": " + why);
}

}  // namespace ringtune
