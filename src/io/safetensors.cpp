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

constexpr uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  auto it = dtype_table().find(dtype);
  return it == dtype_table().end() ? 0 : it->second.first;
}

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
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | map_[i];
    if (n > kMaxHeader) fail("header length " + std::to_string(n) + " exceeds the 100 MiB limit");
    if (8 + n > size_) {
      fail("truncated: header claims " + std::to_string(n) + " bytes but the file has " +
           std::to_string(size_ - 8) + " after the length");
    }
    data_start_ = 8 + n;
    const uint64_t data_size = size_ - data_start_;
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(map_ + 8, map_ + 8 + n);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("bad header JSON: ") + e.what());
    }
    if (!header.is_object()) fail("bad header: not a JSON object");
    std::vector<std::pair<std::string, const TensorInfo*>> order;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) fail("bad header: __metadata__ is not an object");
        for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
          if (!m2.value().is_string()) fail("bad header: __metadata__." + m2.key() + " is not a string");
          metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      auto bad = [&](const std::string& why) { fail("tensor \"" + name + "\": " + why); };
      if (!v.is_object()) bad("entry is not an object");
      if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string dtype");
      if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-array shape");
      if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        bad("data_offsets must be [begin, end]");
      TensorInfo info;
      info.dtype = v["dtype"].get<std::string>();
      const size_t esize = safetensors_dtype_size(info.dtype);
      if (esize == 0) bad("unknown dtype \"" + info.dtype + "\"");
      uint64_t numel = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
        const uint64_t dim = d.get<uint64_t>();
        if (dim != 0 && numel > (std::numeric_limits<uint64_t>::max() / esize) / dim)
          bad("shape overflows");
        numel *= dim;
        info.shape.push_back(static_cast<int64_t>(dim));
      }
      for (const auto& o : v["data_offsets"])
        if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
      info.begin = v["data_offsets"][0].get<uint64_t>();
      info.end = v["data_offsets"][1].get<uint64_t>();
      if (info.begin > info.end) bad("data_offsets begin > end");
      if (info.end > data_size) {
        bad("data is not within the file bounds (end " + std::to_string(info.end) + " > " +
            std::to_string(data_size) + " data bytes): file corrupted or incomplete");
      }
      if (info.end - info.begin != numel * esize) {
        bad("byte size " + std::to_string(info.end - info.begin) + " does not match dtype " +
            info.dtype + " x shape (" + std::to_string(numel * esize) + " bytes)");
      }
      auto [pos, inserted] = tensors_.emplace(name, std::move(info));
      if (!inserted) bad("duplicate name");
      order.emplace_back(name, &pos->second);
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.second->begin < b.second->begin;
    });
    for (size_t i = 1; i < order.size(); ++i) {
      if (order[i].second->begin < order[i - 1].second->end) {
        fail("tensors \"" + order[i - 1].first + "\" and \"" + order[i].first +
             "\" have overlapping data_offsets");
      }
    }
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
  if (is_float && float_dtype >= 0 && static_cast<torch::ScalarType>(float_dtype) != type) {
    return view.to(static_cast<torch::ScalarType>(float_dtype));
  }
  return view.clone();
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
  for (const auto& c : cpu) out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  file.commit();
}

}  // namespace ringtune
