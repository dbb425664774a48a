// Run-time loading of libnccl and the CUDA runtime (see nccl_api.h).
#include "distributed/nccl_api.h"

#include <dlfcn.h>

#include <initializer_list>
#include <mutex>

namespace ringtune {

namespace {

// Resolves `name` in `handle` into `fn`; appends the missing name to *missing.
template <typename Fn>
void resolve(void* handle, const char* name, Fn& fn, std::string* missing) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (!fn) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

// dlopen the first of `names` that loads; the dlerror() of each failure in *errors.
void* open_first(std::initializer_list<const char*> names, std::string* errors) {
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    *errors += (errors->empty() ? "" : "; ") + std::string(e ? e : n);
  }
  return nullptr;
}

struct Loaded {
  bool ok = false;
  std::string why_not;
};

void fill_nccl(NcclApi& api, Loaded& state) {
  std::string errors;
  void* h = open_first({"libnccl.so.2", "libnccl.so"}, &errors);
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
    state.ok = true;
    return;
  }
  std::string errors;
  void* h = open_first({"libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.13"},
                       &errors);
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
  state.ok = true;
}

}  // namespace

const NcclApi* nccl_api(std::string* why_not) {
  static NcclApi api{};
  static Loaded state;
  static std::once_flag once;
  std::call_once(once, [] { fill_nccl(api, state); });
  if (!state.ok && why_not) *why_not = state.why_not;
  return state.ok ? &api : nullptr;
}

const CudaRtApi* cuda_rt_api(std::string* why_not) {
  static CudaRtApi api{};
  static Loaded state;
  static std::once_flag once;
  std::call_once(once, [] { fill_cudart(api, state); });
  if (!state.ok && why_not) *why_not = state.why_not;
  return state.ok ? &api : nullptr;
}

}  // namespace ringtune
