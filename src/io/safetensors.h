// safetensors reader (mmap, every offset checked before use) and writer (atomic: AtomicFile,
// fsync, rename). Format: u64 little-endian header length, JSON header, raw little-endian data.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

struct TensorInfo {
  std::string dtype;             // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;   // byte offsets into the data section
};

class SafeTensorsFile {
 public:
  // Maps and validates `path`; throws InputError naming the file and the problem (truncated file,
  // bad header JSON, unknown dtype, offsets out of bounds or overlapping, size/shape mismatch).
  explicit SafeTensorsFile(const std::string& path);
  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // InputError if absent

  // Copy of the named tensor on the CPU. Floating types (F32/F16/BF16/F64) are converted to
  // `float_dtype` when given (a c10::ScalarType as int; -1 keeps the stored type).
  at::Tensor load(const std::string& name, int float_dtype = -1) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device, contiguous or not) to `path` atomically. Names must be unique.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Element size in bytes of a safetensors dtype string; 0 if unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// The header checks of SafeTensorsFile on a file's bytes in memory (`data`, `size`: the whole
// file), without libtorch (src/io/safetensors_header.cpp): fills `tensors` and `metadata` and
// returns where the data section starts. InputError "PATH: ..." as SafeTensorsFile.
uint64_t parse_safetensors_header(const uint8_t* data, size_t size, const std::string& path,
                                  std::map<std::string, TensorInfo>& tensors,
                                  std::map<std::string, std::string>& metadata);

}  // namespace ringtune
