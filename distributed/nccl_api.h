// The small part of the NCCL and CUDA runtime C APIs that the NCCL communicator uses, declared
// here from their documented signatures (NCCL is not packaged by Debian and this libtorch has no
// CUDA headers), and resolved at run time with dlopen/dlsym, so every build compiles the NCCL
// path and a machine without libnccl / libcudart only loses that backend.
// defines: ncclResult_t, ncclDataType_t, ncclRedOp_t, ncclUniqueId, NcclApi, nccl_api,
//          nccl_source, cudaError_t, CudaRtApi, cuda_rt_api, cuda_rt_source
#pragma once
#include <cstddef>
#include <string>

namespace ringtune {

// ---- NCCL (nccl.h, NCCL 2.x) ----
typedef struct ncclComm* ncclComm_t;
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
};

enum ncclDataType_t {
  ncclInt8 = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclFloat32 = 7,
  ncclFloat64 = 8,
  ncclBfloat16 = 9,  // NCCL >= 2.10
};

enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 };

constexpr int kNcclUniqueIdBytes = 128;
struct ncclUniqueId {
  char internal[kNcclUniqueIdBytes];
};

struct NcclApi {
  ncclResult_t (*GetVersion)(int* version);
  ncclResult_t (*GetUniqueId)(ncclUniqueId* id);
  ncclResult_t (*CommInitRank)(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
  ncclResult_t (*CommDestroy)(ncclComm_t comm);
  ncclResult_t (*CommAbort)(ncclComm_t comm);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t* async_error);
  const char* (*GetErrorString)(ncclResult_t result);
  ncclResult_t (*AllReduce)(const void* sendbuff, void* recvbuff, size_t count,
                            ncclDataType_t dtype, ncclRedOp_t op, ncclComm_t comm,
                            cudaStream_t stream);
  ncclResult_t (*ReduceScatter)(const void* sendbuff, void* recvbuff, size_t recvcount,
                                ncclDataType_t dtype, ncclRedOp_t op, ncclComm_t comm,
                                cudaStream_t stream);
  ncclResult_t (*AllGather)(const void* sendbuff, void* recvbuff, size_t sendcount,
                            ncclDataType_t dtype, ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*Broadcast)(const void* sendbuff, void* recvbuff, size_t count,
                            ncclDataType_t dtype, int root, ncclComm_t comm, cudaStream_t stream);
};

// libnccl loaded once, the first that loads of: libnccl.so.2 by the loader's search (the one a
// CUDA libtorch already loaded, or LD_LIBRARY_PATH), the nvidia-nccl wheel beside the loaded
// libtorch (site-packages/nvidia/*/lib/libnccl.so.2), libnccl.so. nullptr with the reason in
// *why_not when none loads or a symbol above is missing.
const NcclApi* nccl_api(std::string* why_not = nullptr);
// "libnccl 2.27.3 (/path/libnccl.so.2)": which file was loaded, for the log; empty if none.
std::string nccl_source();

// ---- CUDA runtime (cuda_runtime_api.h) ----
typedef int cudaError_t;  // cudaSuccess == 0
constexpr cudaError_t kCudaSuccess = 0;
constexpr unsigned kCudaStreamNonBlocking = 0x01;
constexpr unsigned kCudaEventDisableTiming = 0x02;

struct CudaRtApi {
  cudaError_t (*GetDeviceCount)(int* count);
  cudaError_t (*GetDevice)(int* device);
  cudaError_t (*SetDevice)(int device);
  cudaError_t (*StreamCreateWithFlags)(cudaStream_t* stream, unsigned flags);
  cudaError_t (*StreamDestroy)(cudaStream_t stream);
  cudaError_t (*StreamSynchronize)(cudaStream_t stream);
  cudaError_t (*StreamWaitEvent)(cudaStream_t stream, cudaEvent_t event, unsigned flags);
  cudaError_t (*EventCreateWithFlags)(cudaEvent_t* event, unsigned flags);
  cudaError_t (*EventDestroy)(cudaEvent_t event);
  cudaError_t (*EventRecord)(cudaEvent_t event, cudaStream_t stream);
  const char* (*GetErrorString)(cudaError_t error);
};

// The CUDA runtime loaded once: the one already loaded into the process (a CUDA libtorch's),
// else the first that loads of libcudart.so.13, .so.12, .so.11.0 (versioned names first: the
// unversioned one is a development link that may point elsewhere), the nvidia-cuda-runtime wheel
// beside libtorch, libcudart.so. nullptr with the reason in *why_not otherwise.
const CudaRtApi* cuda_rt_api(std::string* why_not = nullptr);
// "libcudart (/path/libcudart.so.13)" or "libcudart (already loaded: /path)", for the log.
std::string cuda_rt_source();

}  // namespace ringtune
