// Thin RAII layer over the HDF5 C API for ringtune's files (prepared datasets, checkpoints):
// files written under a temporary name and committed into place (AtomicFile, atomic_file.h:
// fsync, rename, directory fsync; the HDF5 handle is closed on every path), 1-D chunked datasets with
// Fletcher-32 checksums that grow by appending (bounded memory), scalar attributes.
// HDF5's own error stack printing is switched off; failures throw ringtune errors naming the file.
// defines: H5File, H5Appender, h5_available_types
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ringtune {

class AtomicFile;  // src/io/atomic_file.h

using h5id = int64_t;  // hid_t

class H5File {
 public:
  // Creates `path + ".tmp"`; commit() flushes and closes it, then commits it as `path`. A file
  // never committed is closed and removed by the destructor.
  static H5File create(const std::string& path);
  // Opens an existing file read-only. InputError if it is not a readable HDF5 file.
  static H5File open(const std::string& path);
  H5File(H5File&& other) noexcept;
  H5File& operator=(H5File&&) = delete;
  ~H5File();

  void commit();
  const std::string& path() const { return path_; }
  h5id id() const { return id_; }

  // Attributes on the root group.
  void set_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, int64_t value);
  void set_attr(const std::string& name, double value);
  bool has_attr(const std::string& name) const;
  std::string attr_string(const std::string& name) const;  // InputError if absent or mistyped
  int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;

  // Whole 1-D datasets (written chunked with Fletcher-32). T: int32_t, int64_t, uint8_t, float.
  template <typename T>
  void write(const std::string& name, const std::vector<T>& data);
  template <typename T>
  std::vector<T> read(const std::string& name) const;  // checksums verified while reading
  bool has_dataset(const std::string& name) const;
  // n-D float32 datasets (chunked, Fletcher-32); names may contain '/' (groups are created).
  void write_f32(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  std::vector<float> read_f32(const std::string& name, std::vector<int64_t>& shape) const;
  // Names of the datasets directly under group `group` ("/" for the root), sorted.
  std::vector<std::string> list(const std::string& group) const;
  int64_t dataset_size(const std::string& name) const;

 private:
  H5File() = default;
  std::string path_, write_path_;
  h5id id_ = -1;
  bool writable_ = false;
  std::unique_ptr<AtomicFile> atomic_;  // writable files
};

// Appends to a 1-D extendable dataset in blocks; flush() (or destruction) writes the rest.
template <typename T>
class H5Appender {
 public:
  H5Appender(H5File& file, const std::string& name, size_t block = size_t{1} << 20);
  ~H5Appender();
  void push(T value) {
    buffer_.push_back(value);
    if (buffer_.size() >= block_) flush();
  }
  void append(const T* data, size_t n);
  void flush();
  int64_t size() const { return written_ + static_cast<int64_t>(buffer_.size()); }

 private:
  H5File& file_;
  std::string name_;
  h5id dataset_ = -1;
  size_t block_;
  std::vector<T> buffer_;
  int64_t written_ = 0;
};

}  // namespace ringtune
