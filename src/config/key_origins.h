// Where each config key was set ("cfg.yaml:12", "command line: override \"x=y\"", or the config's
// name for a default), kept by the typed options after the Config is gone, so that a check made
// later (once the model or the data is known) can still name the file, line and key.
// defines: KeyOrigins
#pragma once
#include <map>
#include <string>

namespace ringtune {

class Config;  // src/config/registry.h

class KeyOrigins {
 public:
  KeyOrigins() = default;
  explicit KeyOrigins(const Config& config);  // every declared key

  // "cfg.yaml:12" (the config's name when the key was not written anywhere; "" without a config).
  std::string origin(const std::string& key) const;
  // "cfg.yaml:12: key" (the key alone without a config).
  std::string where(const std::string& key) const;
  // InputError "cfg.yaml:12: key: why".
  [[noreturn]] void fail(const std::string& key, const std::string& why) const;

 private:
  std::string source_;
  std::map<std::string, std::string> origin_;
};

}  // namespace ringtune
