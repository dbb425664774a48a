// HDF5 helpers: see h5.h.
#include "src/io/h5.h"

#include <cerrno>

#include <hdf5.h>

#include <filesystem>
#include <mutex>

#include "src/error.h"
#include "src/io/atomic_file.h"

namespace ringtune {

namespace {

void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    // No exit handler: a file whose close failed (a full disk) stays open inside HDF5, and its
    // handler would try to flush it again at exit and crash. Every file is closed explicitly.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

template <typename T>
hid_t native_type();
template <>
hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <>
hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <>
hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <>
hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }

template <typename T>
hid_t file_type();
template <>
hid_t file_type<int32_t>() { return H5T_STD_I32LE; }
template <>
hid_t file_type<int64_t>() { return H5T_STD_I64LE; }
template <>
hid_t file_type<uint8_t>() { return H5T_STD_U8LE; }
template <>
hid_t file_type<float>() { return H5T_IEEE_F32LE; }

struct Handle {  // closes with the given function
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

// A dataset's stored type must be the one ringtune writes: HDF5 converts any float or integer
// layout on reading, so a damaged type header (an exponent bias, a byte order, a size) would
// otherwise read back as other numbers with the data's checksum intact.
// `type` is a handle from H5Dget_type or H5Aget_type (closed here); `what` is "dataset NAME" or
// "attribute NAME".
void check_stored_type(hid_t type, hid_t expected, const std::string& path, const std::string& what) {
  Handle owned{type, H5Tclose};
  if (owned.id < 0 || H5Tequal(owned.id, expected) <= 0)
    throw InputError(path + ": " + what + " is not stored as the type ringtune writes (corrupted)");
}

hid_t create_chunked(hid_t file, const std::string& name, hid_t type, hsize_t size,
                     hsize_t chunk, const std::string& path) {
  hsize_t dims[1] = {size}, maxdims[1] = {H5S_UNLIMITED}, chunks[1] = {chunk};
  Handle space{H5Screate_simple(1, dims, maxdims), H5Sclose};
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  H5Pset_chunk(dcpl.id, 1, chunks);
  H5Pset_fletcher32(dcpl.id);
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  hid_t ds = H5Dcreate2(file, name.c_str(), type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT);
  if (ds < 0) throw EnvironmentError(path + ": " + write_failure(path, errno, "cannot create dataset " + name));
  return ds;
}

// H5Aread fills the attribute's whole dataspace: the attribute readers hold one value.
void check_single_value(hid_t attr, const std::string& path, const std::string& name) {
  Handle space{H5Aget_space(attr), H5Sclose};
  if (attr < 0 || space.id < 0 || H5Sget_simple_extent_npoints(space.id) != 1)
    throw InputError(path + ": attribute " + name + " is not a single value (corrupted?)");
}

// The most elements of `elem_size` bytes a dataset of `path` can hold: ringtune writes datasets
// uncompressed, so their data fits in the file. A corrupted dataspace may claim any size.
hsize_t max_elements(const std::string& path, size_t elem_size) {
  std::error_code ec;
  const uintmax_t bytes = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<hsize_t>(bytes / elem_size);
}

}  // namespace

H5File H5File::create(const std::string& path) {
  quiet_hdf5();
  H5File f;
  f.path_ = path;
  f.atomic_ = std::make_unique<AtomicFile>(path);
  f.write_path_ = f.atomic_->temp_path();
  f.writable_ = true;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path().empty()
                                          ? std::filesystem::path(".")
                                          : std::filesystem::path(path).parent_path());
  f.id_ = H5Fcreate(f.write_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f.id_ < 0) throw EnvironmentError(path + ": " + write_failure(f.write_path_, errno, "cannot create HDF5 file"));
  return f;
}

H5File H5File::open(const std::string& path) {
  quiet_hdf5();
  H5File f;
  f.path_ = path;
  if (!std::filesystem::exists(path)) throw InputError(path + ": no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError(path + ": not an HDF5 file (or truncated)");
  f.id_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f.id_ < 0) throw InputError(path + ": cannot open HDF5 file (corrupted?)");
  return f;
}

H5File::H5File(H5File&& o) noexcept
    : path_(std::move(o.path_)),
      write_path_(std::move(o.write_path_)),
      id_(o.id_),
      writable_(o.writable_),
      atomic_(std::move(o.atomic_)) {
  o.id_ = -1;
}

H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);
  // atomic_ (destroyed next) removes the temporary file of a file never committed.
}

void H5File::commit() {
  if (!writable_ || !atomic_) throw Error(path_ + ": commit on a read-only file");
  // Closed whatever happens: a handle left open would be closed (and crash) in HDF5's exit handlers.
  const bool flushed = H5Fflush(id_, H5F_SCOPE_GLOBAL) >= 0;
  const bool closed = H5Fclose(id_) >= 0;
  id_ = -1;
  if (!flushed || !closed)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "HDF5 flush/close failed"));
  atomic_->commit();  // on disk before the rename makes it visible
}

void H5File::set_attr(const std::string& name, const std::string& value) {
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, value.empty() ? 1 : value.size());
  H5Tset_strpad(type.id, H5T_STR_NULLPAD);
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  if (H5Aexists(id_, name.c_str()) > 0) H5Adelete(id_, name.c_str());
  Handle attr{H5Acreate2(id_, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (attr.id < 0 || H5Awrite(attr.id, type.id, padded.data()) < 0)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot write attribute " + name));
}

void H5File::set_attr(const std::string& name, int64_t value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  if (H5Aexists(id_, name.c_str()) > 0) H5Adelete(id_, name.c_str());
  Handle attr{H5Acreate2(id_, name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_INT64, &value) < 0)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot write attribute " + name));
}

void H5File::set_attr(const std::string& name, double value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  if (H5Aexists(id_, name.c_str()) > 0) H5Adelete(id_, name.c_str());
  Handle attr{H5Acreate2(id_, name.c_str(), H5T_IEEE_F64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_DOUBLE, &value) < 0)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot write attribute " + name));
}

bool H5File::has_attr(const std::string& name) const { return H5Aexists(id_, name.c_str()) > 0; }

std::string H5File::attr_string(const std::string& name) const {
  if (!has_attr(name)) throw InputError(path_ + ": missing attribute " + name);
  Handle attr{H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose};
  check_single_value(attr.id, path_, name);
  Handle type{H5Aget_type(attr.id), H5Tclose};
  if (H5Tget_class(type.id) != H5T_STRING || H5Tis_variable_str(type.id) > 0)
    throw InputError(path_ + ": attribute " + name + " is not a fixed-length string");
  std::string out(H5Tget_size(type.id), '\0');
  if (H5Aread(attr.id, type.id, out.data()) < 0) throw InputError(path_ + ": cannot read attribute " + name);
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

int64_t H5File::attr_int(const std::string& name) const {
  if (!has_attr(name)) throw InputError(path_ + ": missing attribute " + name);
  Handle attr{H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose};
  check_single_value(attr.id, path_, name);
  check_stored_type(H5Aget_type(attr.id), H5T_STD_I64LE, path_, "attribute " + name);
  int64_t v = 0;
  if (H5Aread(attr.id, H5T_NATIVE_INT64, &v) < 0) throw InputError(path_ + ": cannot read attribute " + name);
  return v;
}

double H5File::attr_double(const std::string& name) const {
  if (!has_attr(name)) throw InputError(path_ + ": missing attribute " + name);
  Handle attr{H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose};
  check_single_value(attr.id, path_, name);
  check_stored_type(H5Aget_type(attr.id), H5T_IEEE_F64LE, path_, "attribute " + name);
  double v = 0;
  if (H5Aread(attr.id, H5T_NATIVE_DOUBLE, &v) < 0) throw InputError(path_ + ": cannot read attribute " + name);
  return v;
}

bool H5File::has_dataset(const std::string& name) const {
  return H5Lexists(id_, name.c_str(), H5P_DEFAULT) > 0;
}

int64_t H5File::dataset_size(const std::string& name) const {
  if (!has_dataset(name)) throw InputError(path_ + ": missing dataset " + name);
  Handle ds{H5Dopen2(id_, name.c_str(), H5P_DEFAULT), H5Dclose};
  Handle space{H5Dget_space(ds.id), H5Sclose};
  if (H5Sget_simple_extent_ndims(space.id) != 1) throw InputError(path_ + ": dataset " + name + " is not 1-D");
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(space.id, dims, nullptr);
  return static_cast<int64_t>(dims[0]);
}

void H5File::write_f32(const std::string& name, const float* data, const std::vector<int64_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end()), chunks(dims.size());
  hsize_t numel = 1;
  for (auto d : dims) numel *= d;
  // Chunks of whole rows, at most ~1M elements.
  hsize_t budget = 1 << 20;
  for (size_t i = dims.size(); i-- > 0;) {
    chunks[i] = std::max<hsize_t>(1, std::min<hsize_t>(dims[i], budget));
    budget = std::max<hsize_t>(1, budget / std::max<hsize_t>(1, dims[i]));
  }
  Handle space{dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  if (!dims.empty() && numel > 0) {
    H5Pset_chunk(dcpl.id, static_cast<int>(dims.size()), chunks.data());
    H5Pset_fletcher32(dcpl.id);
  }
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Handle ds{H5Dcreate2(id_, name.c_str(), H5T_IEEE_F32LE, space.id, lcpl.id, dcpl.id, H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot create dataset " + name));
  if (numel > 0 && H5Dwrite(ds.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot write dataset " + name));
}

std::vector<float> H5File::read_f32(const std::string& name, std::vector<int64_t>& shape) const {
  if (!has_dataset(name)) throw InputError(path_ + ": missing dataset " + name);
  Handle ds{H5Dopen2(id_, name.c_str(), H5P_DEFAULT), H5Dclose};
  check_stored_type(H5Dget_type(ds.id), H5T_IEEE_F32LE, path_, "dataset " + name);
  Handle space{H5Dget_space(ds.id), H5Sclose};
  const int nd = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  shape.assign(dims.begin(), dims.end());
  const hsize_t limit = max_elements(path_, sizeof(float));
  size_t numel = 1;
  for (auto d : dims) {
    if (d != 0 && numel > limit / d)
      throw InputError(path_ + ": dataset " + name + " claims more elements than the file holds (corrupted)");
    numel *= d;
  }
  std::vector<float> out(numel);
  if (numel > 0 && H5Dread(ds.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    throw InputError(path_ + ": dataset " + name + " failed its checksum or cannot be read (corrupted)");
  return out;
}

std::vector<std::string> H5File::list(const std::string& group) const {
  std::vector<std::string> names;
  if (group != "/" && H5Lexists(id_, group.c_str(), H5P_DEFAULT) <= 0) return names;
  Handle g{H5Gopen2(id_, group.c_str(), H5P_DEFAULT), H5Gclose};
  H5G_info_t info;
  if (g.id < 0 || H5Gget_info(g.id, &info) < 0) throw InputError(path_ + ": cannot list " + group);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) throw InputError(path_ + ": cannot list " + group + " (corrupted?)");
    std::string name(static_cast<size_t>(n), '\0');
    if (H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT) < 0)
      throw InputError(path_ + ": cannot list " + group + " (corrupted?)");
    names.push_back(name);
  }
  return names;
}

template <typename T>
void H5File::write(const std::string& name, const std::vector<T>& data) {
  const hsize_t chunk = std::max<hsize_t>(1, std::min<hsize_t>(data.size(), 1 << 16));
  Handle ds{create_chunked(id_, name, file_type<T>(), data.size(), chunk, path_), H5Dclose};
  if (!data.empty() &&
      H5Dwrite(ds.id, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0)
    throw EnvironmentError(path_ + ": " + write_failure(write_path_, errno, "cannot write dataset " + name));
}

template <typename T>
std::vector<T> H5File::read(const std::string& name) const {
  const int64_t n = dataset_size(name);
  if (n < 0 || static_cast<hsize_t>(n) > max_elements(path_, sizeof(T)))
    throw InputError(path_ + ": dataset " + name + " claims more elements than the file holds (corrupted)");
  std::vector<T> out(static_cast<size_t>(n));
  Handle ds{H5Dopen2(id_, name.c_str(), H5P_DEFAULT), H5Dclose};
  check_stored_type(H5Dget_type(ds.id), file_type<T>(), path_, "dataset " + name);
  if (n > 0 && H5Dread(ds.id, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    throw InputError(path_ + ": dataset " + name + " failed its checksum or cannot be read (corrupted)");
  return out;
}

template <typename T>
H5Appender<T>::H5Appender(H5File& file, const std::string& name, size_t block)
    : file_(file), name_(name), block_(block) {
  dataset_ = create_chunked(file.id(), name, file_type<T>(), 0, std::min<size_t>(block, 1 << 16),
                            file.path());
  buffer_.reserve(block_);
}

template <typename T>
H5Appender<T>::~H5Appender() {
  try {
    flush();
  } catch (...) {
  }
  if (dataset_ >= 0) H5Dclose(dataset_);
}

template <typename T>
void H5Appender<T>::append(const T* data, size_t n) {
  for (size_t i = 0; i < n; ++i) push(data[i]);
}

template <typename T>
void H5Appender<T>::flush() {
  if (buffer_.empty()) return;
  hsize_t new_size[1] = {static_cast<hsize_t>(written_ + static_cast<int64_t>(buffer_.size()))};
  if (H5Dset_extent(dataset_, new_size) < 0) throw EnvironmentError(file_.path() + ": " + write_failure(file_.path(), errno, "cannot extend " + name_));
  Handle fspace{H5Dget_space(dataset_), H5Sclose};
  hsize_t start[1] = {static_cast<hsize_t>(written_)}, count[1] = {buffer_.size()};
  H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start, nullptr, count, nullptr);
  Handle mspace{H5Screate_simple(1, count, nullptr), H5Sclose};
  if (H5Dwrite(dataset_, native_type<T>(), mspace.id, fspace.id, H5P_DEFAULT, buffer_.data()) < 0)
    throw EnvironmentError(file_.path() + ": " + write_failure(file_.path(), errno, "cannot append to " + name_));
  written_ += static_cast<int64_t>(buffer_.size());
  buffer_.clear();
}

template void H5File::write<int32_t>(const std::string&, const std::vector<int32_t>&);
template void H5File::write<int64_t>(const std::string&, const std::vector<int64_t>&);
template void H5File::write<uint8_t>(const std::string&, const std::vector<uint8_t>&);
template void H5File::write<float>(const std::string&, const std::vector<float>&);
template std::vector<int32_t> H5File::read<int32_t>(const std::string&) const;
template std::vector<int64_t> H5File::read<int64_t>(const std::string&) const;
template std::vector<uint8_t> H5File::read<uint8_t>(const std::string&) const;
template std::vector<float> H5File::read<float>(const std::string&) const;
template class H5Appender<int32_t>;
template class H5Appender<int64_t>;
template class H5Appender<uint8_t>;

}  // namespace ringtune
