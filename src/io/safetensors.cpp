// safetensors I/O. The reader never touches a byte outside the mapped file: the header length,
// each tensor's offsets, and its byte size against dtype x shape are checked at open.
#include "src/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "distributed/progress.h"
#include "src/error.h"
#include "src/io/atomic_file.h"

namespace ringtune {

namespace {

const std::map<std::string, std::pair<size_t, torch::ScalarType>>& dtype_table() {
  static const std::map<std::string, std::pair<size_t, torch::ScalarType>> table = {
      {"F64", {8, torch::kFloat64}}, {"F32", {4, torch::kFloat32}}, {"F16", {2, torch::kFloat16}},
      {"BF16", {2, torch::kBFloat16}}, {"I64", {8, torch::kInt64}}, {"I32", {4, torch::kInt32}},
      {"I16", {2, torch::kInt16}},   {"I8", {1, torch::kInt8}},     {"U8", {1, torch::kUInt8}},
      {"BOOL", {1, torch::kBool}},
  };
  return table;
}

std::string dtype_name(torch::ScalarType t) {
  for (const auto& [name, v] : dtype_table())
    if (v.second == t) return name;
  throw Error("safetensors: cannot store tensors of type " + std::string(c10::toString(t)));
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& why) -> void { throw InputError(path + ": " + why); };
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("truncated: " + std::to_string(size_) + " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(std::string("mmap failed: ") + std::strerror(errno));
  map_ = static_cast<const uint8_t*>(m);
  try {
    data_start_ = parse_safetensors_header(map_, size_, path, tensors_, metadata_);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    map_ = nullptr;
    throw;
  }
}

SafeTensorsFile::~SafeTensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

const TensorInfo& SafeTensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw InputError(path_ + ": missing tensor \"" + name + "\"");
  return it->second;
}

at::Tensor SafeTensorsFile::load(const std::string& name, int float_dtype) const {
  const TensorInfo& ti = info(name);
  const auto type = dtype_table().at(ti.dtype).second;
  // from_blob needs a writable pointer; the clone below copies before anything can write.
  auto view = torch::from_blob(const_cast<uint8_t*>(map_ + data_start_ + ti.begin), ti.shape,
                               torch::TensorOptions().dtype(type));
  const bool is_float = type == torch::kFloat32 || type == torch::kFloat16 ||
                        type == torch::kBFloat16 || type == torch::kFloat64;
  at::Tensor out = is_float && float_dtype >= 0 && static_cast<torch::ScalarType>(float_dtype) != type
                       ? view.to(static_cast<torch::ScalarType>(float_dtype))
                       : view.clone();
  // The mapped file pages just read are let go: they stay in the page cache, but would otherwise
  // count in this process's resident size until the file is closed (a float32 file loaded as
  // bf16 peaked at the file's size plus the model's, 4.8 GiB for a 1.1B model, not 2.2).
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(map_ + data_start_ + ti.begin) & ~(page - 1);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(map_ + data_start_ + ti.end);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  return out;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (header.contains(name)) throw Error("write_safetensors: duplicate tensor name " + name);
    auto c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data section
  AtomicFile file(path);
  std::ostream& out = file.stream();
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& c : cpu) {
    out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
    note_progress();  // rank 0 exports while the other ranks wait
  }
  file.commit();
}

}  // namespace ringtune
