// Fuzz target: the safetensors header and offsets (parse_safetensors_header, what SafeTensorsFile
// checks when it opens a file). The input is a whole .safetensors file. When the header is
// accepted, every tensor's bytes are read: they must lie inside the input.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "src/error.h"
#include "src/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, ringtune::TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t start = 0;
  try {
    start = ringtune::parse_safetensors_header(data, size, "fuzz.safetensors", tensors, metadata);
  } catch (const ringtune::InputError&) {
    return 0;
  }
  if (start < 8 || start > size) std::abort();
  unsigned sum = 0;
  for (const auto& [name, t] : tensors) {
    const size_t esize = ringtune::safetensors_dtype_size(t.dtype);
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) std::abort();
      numel *= static_cast<uint64_t>(d);
    }
    if (esize == 0 || t.begin > t.end || t.end > size - start || t.end - t.begin != numel * esize) std::abort();
    for (uint64_t i = t.begin; i < t.end; ++i) sum += data[start + i];
  }
  return static_cast<int>(sum & 0);
}
