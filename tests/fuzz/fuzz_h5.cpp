// Fuzz target: the HDF5 readers. The input is written as a file and opened as a prepared dataset
// (PreparedDataset::load: attributes, datasets, checksums, offsets) and as a training checkpoint
// (load_checkpoint). libhdf5 itself is not instrumented: only ringtune's side is checked for memory
// errors, but a crash inside libhdf5 shows as a crash all the same.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <torch/torch.h>

#include "src/error.h"
#include "src/io/checkpoint.h"
#include "src/io/prepared_dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = rt_fuzz::write_file("fuzz.h5", data, size);
  try {
    const ringtune::PreparedDataset d = ringtune::PreparedDataset::load(path);
    const int64_t n = d.size();
    if (d.ids.size() != d.loss_mask.size()) std::abort();
    for (int64_t i = 0; i < n; ++i)
      if (d.offsets[i] < 0 || d.offsets[i] > d.offsets[i + 1] ||
          d.offsets[i + 1] > static_cast<int64_t>(d.ids.size()))
        std::abort();
  } catch (const ringtune::InputError&) {
  }
  try {
    const ringtune::CheckpointState s = ringtune::load_checkpoint(path);
    for (const auto& [name, t] : s.trainable) (void)t.sum().item<float>();
  } catch (const ringtune::InputError&) {
  }
  return 0;
}
