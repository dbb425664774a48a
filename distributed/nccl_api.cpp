// Run-time loading of libnccl and the CUDA runtime (see nccl_api.h).
#include "distributed/nccl_api.h"

#include <dlfcn.h>
#include <glob.h>
#include <link.h>

#include <mutex>
#include <string>
#include <vector>

namespace ringtune {

namespace {

// Resolves `name` in `handle` into `fn`; appends the missing name to *missing.
template <typename Fn>
void resolve(void* handle, const char* name, Fn& fn, std::string* missing) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (!fn) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

// dlopen the first of `names` that loads; the dlerror() of each failure in *errors.
void* open_first(const std::vector<std::string>& names, std::string* errors) {
  for (const auto& n : names) {
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    *errors += (errors->empty() ? "" : "; ") + std::string(e ? e : n);
  }
  return nullptr;
}

// The directory of the loaded libc10 (libtorch's own lib folder), or "" when not found.
std::string torch_lib_dir() {
  std::string dir;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        const size_t slash = name.rfind('/');
        if (slash == std::string::npos || name.find("libc10.so", slash) == std::string::npos) return 0;
        *static_cast<std::string*>(out) = name.substr(0, slash);
        return 1;
      },
      &dir);
  return dir;
}

// Files of the NVIDIA pip wheels installed beside torch (site-packages/torch/lib ->
// site-packages/nvidia/<package>/lib/<pattern>), sorted.
std::vector<std::string> wheel_libraries(const std::string& pattern) {
  const std::string torch_dir = torch_lib_dir();
  if (torch_dir.empty()) return {};
  std::vector<std::string> out;
  glob_t g{};
  if (glob((torch_dir + "/../../nvidia/*/lib/" + pattern).c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  return out;
}

// The file a resolved symbol comes from.
std::string file_of(void* symbol) {
  Dl_info info{};
  return symbol && dladdr(symbol, &info) && info.dli_fname ? info.dli_fname : "?";
}

struct Loaded {
  bool ok = false;
  std::string why_not;
  std::string source;  // which file, for the log
};

void fill_nccl(NcclApi& api, Loaded& state) {
  std::string errors;
  std::vector<std::string> names{"libnccl.so.2"};
  for (const auto& f : wheel_libraries("libnccl.so.2")) names.push_back(f);
  names.push_back("libnccl.so");
  void* h = open_first(names, &errors);
  if (!h) {
    state.why_not = "libnccl cannot be loaded (" + errors + ")";
    return;
  }
  std::string missing;
  resolve(h, "ncclGetVersion", api.GetVersion, &missing);
  resolve(h, "ncclGetUniqueId", api.GetUniqueId, &missing);
  resolve(h, "ncclCommInitRank", api.CommInitRank, &missing);
  resolve(h, "ncclCommDestroy", api.CommDestroy, &missing);
  resolve(h, "ncclCommAbort", api.CommAbort, &missing);
  resolve(h, "ncclCommGetAsyncError", api.CommGetAsyncError, &missing);
  resolve(h, "ncclGetErrorString", api.GetErrorString, &missing);
  resolve(h, "ncclAllReduce", api.AllReduce, &missing);
  resolve(h, "ncclReduceScatter", api.ReduceScatter, &missing);
  resolve(h, "ncclAllGather", api.AllGather, &missing);
  resolve(h, "ncclBroadcast", api.Broadcast, &missing);
  if (!missing.empty()) {
    state.why_not = "libnccl lacks symbols: " + missing + " (NCCL >= 2.4 needed)";
    return;
  }
  int version = 0;
  api.GetVersion(&version);
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch, older ones major*1000 + minor*100 + patch.
  const int major = version >= 10000 ? version / 10000 : version / 1000;
  const int minor = version >= 10000 ? version / 100 % 100 : version / 100 % 10;
  state.source = "libnccl " + std::to_string(major) + "." + std::to_string(minor) + "." +
                 std::to_string(version % 100) + " (" + file_of(reinterpret_cast<void*>(api.GetVersion)) + ")";
  state.ok = true;  // the handle stays open for the life of the process
}

void fill_cudart(CudaRtApi& api, Loaded& state) {
  auto resolve_all = [&api](void* h, std::string* missing) {
    resolve(h, "cudaGetDeviceCount", api.GetDeviceCount, missing);
    resolve(h, "cudaGetDevice", api.GetDevice, missing);
    resolve(h, "cudaSetDevice", api.SetDevice, missing);
    resolve(h, "cudaStreamCreateWithFlags", api.StreamCreateWithFlags, missing);
    resolve(h, "cudaStreamDestroy", api.StreamDestroy, missing);
    resolve(h, "cudaStreamSynchronize", api.StreamSynchronize, missing);
    resolve(h, "cudaStreamWaitEvent", api.StreamWaitEvent, missing);
    resolve(h, "cudaEventCreateWithFlags", api.EventCreateWithFlags, missing);
    resolve(h, "cudaEventDestroy", api.EventDestroy, missing);
    resolve(h, "cudaEventRecord", api.EventRecord, missing);
    resolve(h, "cudaGetErrorString", api.GetErrorString, missing);
  };
  // A CUDA build of libtorch has already loaded a runtime into the global scope: use that one, so
  // streams and the current device are those of torch's runtime.
  std::string missing;
  resolve_all(RTLD_DEFAULT, &missing);
  if (missing.empty()) {
    state.source = "libcudart (already loaded: " + file_of(reinterpret_cast<void*>(api.GetDeviceCount)) + ")";
    state.ok = true;
    return;
  }
  std::string errors;
  std::vector<std::string> names{"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"};
  for (const auto& f : wheel_libraries("libcudart.so.*")) names.push_back(f);
  names.push_back("libcudart.so");
  void* h = open_first(names, &errors);
  if (!h) {
    state.why_not = "the CUDA runtime cannot be loaded (" + errors + ")";
    return;
  }
  missing.clear();
  resolve_all(h, &missing);
  if (!missing.empty()) {
    state.why_not = "libcudart lacks symbols: " + missing;
    return;
  }
  state.source = "libcudart (" + file_of(reinterpret_cast<void*>(api.GetDeviceCount)) + ")";
  state.ok = true;
}

// Each library is loaded once, at the first call.
template <typename Api>
struct Once {
  Api api{};
  Loaded state;
  std::once_flag once;
  const Loaded& get(void (*fill)(Api&, Loaded&)) {
    std::call_once(once, [&] { fill(api, state); });
    return state;
  }
};
Once<NcclApi> g_nccl;
Once<CudaRtApi> g_cudart;

}  // namespace

const NcclApi* nccl_api(std::string* why_not) {
  const Loaded& state = g_nccl.get(fill_nccl);
  if (!state.ok && why_not) *why_not = state.why_not;
  return state.ok ? &g_nccl.api : nullptr;
}

std::string nccl_source() { return g_nccl.get(fill_nccl).source; }

const CudaRtApi* cuda_rt_api(std::string* why_not) {
  const Loaded& state = g_cudart.get(fill_cudart);
  if (!state.ok && why_not) *why_not = state.why_not;
  return state.ok ? &g_cudart.api : nullptr;
}

std::string cuda_rt_source() { return g_cudart.get(fill_cudart).source; }

}  // namespace ringtune
