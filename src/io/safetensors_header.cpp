// The torch-free part of the safetensors reader: the header length, the header JSON and every
// tensor's offsets, checked before any tensor byte is touched (see safetensors.h).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "src/error.h"
#include "src/io/safetensors.h"

namespace ringtune {

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation

}  // namespace

// The dtypes safetensors.cpp's dtype_table maps to torch types; keep the two lists the same.
size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1},
  };
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

uint64_t parse_safetensors_header(const uint8_t* data, size_t size, const std::string& path,
                                  std::map<std::string, TensorInfo>& tensors,
                                  std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& why) -> void { throw InputError(path + ": " + why); };
  if (size < 8) fail("truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxHeader) fail("header length " + std::to_string(n) + " exceeds the 100 MiB limit");
  if (8 + n > size) {
    fail("truncated: header claims " + std::to_string(n) + " bytes but the file has " +
         std::to_string(size - 8) + " after the length");
  }
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + n);
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
        metadata[m2.key()] = m2.value().get<std::string>();
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
    auto [pos, inserted] = tensors.emplace(name, std::move(info));
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
  return data_start;
}

}  // namespace ringtune
