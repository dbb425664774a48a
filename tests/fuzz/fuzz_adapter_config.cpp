// Fuzz target: a PEFT adapter_config.json (read_peft_config: the fields load_adapter takes from it
// and validate_lora_options' checks of them).
#include <cstdint>
#include <string>

#include "model/lora.h"
#include "src/error.h"
#include "src/io/peft_config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rt_fuzz::write_file("adapter_config.json", data, size);
  try {
    const ringtune::LoraOptions o = ringtune::read_peft_config(path);
    (void)ringtune::lora_scale(o);
  } catch (const ringtune::InputError&) {
  }
  return 0;
}
