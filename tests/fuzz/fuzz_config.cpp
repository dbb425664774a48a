// Fuzz target: a YAML config file (load_config_from_string: YAML parsing, flattening, the key
// registry's types and choices, validate_config). A config that loads is dumped (dump_yaml) and
// loaded again: that must succeed and give the same dump. Every set key's value is read with the
// getter of its type.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/config/registry.h"
#include "src/error.h"
#include "fuzz_util.h"

using namespace ringtune;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string& base = rt_fuzz::scratch_dir();
  std::string dump;
  try {
    const Config c = load_config_from_string(text, {}, "fuzz.yaml", base);
    for (const KeyDef& k : c.registry().keys()) {
      if (!c.is_set(k.name)) continue;
      (void)c.text(k.name);
      (void)c.origin(k.name).describe();
      switch (k.type) {
        case KeyType::Bool: (void)c.get_bool(k.name); break;
        case KeyType::Int: (void)c.get_int(k.name); break;
        case KeyType::Float: (void)c.get_double(k.name); break;
        case KeyType::StringList: (void)c.get_strings(k.name); break;
        default: (void)c.get_string(k.name); break;
      }
    }
    dump = c.dump_yaml();
  } catch (const InputError&) {
    return 0;
  }
  try {
    const Config again = load_config_from_string(dump, {}, "dump.yaml", base);
    if (again.dump_yaml() != dump) {
      std::fprintf(stderr, "dump_yaml differs after loading it again:\n--- first\n%s--- again\n%s", dump.c_str(),
                   again.dump_yaml().c_str());
      std::abort();
    }
  } catch (const InputError& e) {
    std::fprintf(stderr, "dump_yaml does not load again: %s\n--- dump\n%s", e.what(), dump.c_str());
    std::abort();
  }
  return 0;
}
