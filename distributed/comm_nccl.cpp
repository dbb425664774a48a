// The NCCL communicator: contiguous CUDA tensors on one device, libnccl and the CUDA runtime
// resolved at run time (nccl_api.h). Rank 0's ncclUniqueId goes to the others with MPI_Bcast.
//
// Streams: collectives run on a communicator-owned non-blocking stream. Torch's compute stream is
// assumed to be the legacy default stream (stream 0: libtorch's default unless the caller switches
// streams with a stream guard). Before each collective an event recorded on stream 0 makes the
// comm stream wait for the producers of the inputs; after it, stream 0 waits on an event recorded
// on the comm stream, so later kernels (and the caching allocator's reuse of temporaries, also on
// stream 0) see the result. The host never blocks except in barrier() and the destructor.
//
// NCCL's reduce-scatter and all-gather need equal counts per rank: uneven counts go through a
// temporary buffer padded to max(counts) per rank.
#include <ATen/ATen.h>

#include <algorithm>
#include <exception>
#include <stdexcept>

#include "distributed/comm_backends.h"
#include "distributed/mpi_check.h"
#include "distributed/nccl_api.h"
#include "distributed/process_group.h"

namespace ringtune {

namespace {

constexpr cudaStream_t kLegacyDefaultStream = nullptr;

ncclDataType_t nccl_type(at::ScalarType t, const char* where) {
  switch (t) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    case at::kByte:
      return ncclUint8;
    case at::kChar:
      return ncclInt8;
    default:
      throw std::invalid_argument(std::string(where) + "has dtype " +
                                  std::string(c10::toString(t)) +
                                  "; the NCCL backend takes float32, float64, float16, bfloat16, "
                                  "int32, int64, uint8, int8");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  throw std::invalid_argument("unknown ReduceOp");
}

char* bytes(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const ProcessGroup& group) : rank_(group.rank()), size_(group.size()) {
    // Local set-up first; then all ranks agree, so a rank without NCCL takes every rank to an
    // exception instead of leaving the others waiting in MPI_Bcast.
    std::string error;
    try {
      setup_local(group.local_rank());
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (group.any(!error.empty())) {
      release();
      throw std::runtime_error(
          "NCCL communicator: " +
          (error.empty() ? std::string("another rank could not set NCCL up") : error));
    }
    // Rank 0 draws the id; a failure there is broadcast along with it.
    struct {
      int ok;
      ncclUniqueId id;
    } msg{};
    if (rank_ == 0) msg.ok = nccl_->GetUniqueId(&msg.id) == ncclSuccess ? 1 : 0;
    mpi_check(MPI_Bcast(&msg, sizeof(msg), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast(ncclUniqueId)");
    if (!msg.ok) {
      release();
      throw std::runtime_error("NCCL communicator: ncclGetUniqueId failed on rank 0");
    }
    DeviceGuard guard(*cuda_, device_);
    const ncclResult_t rc = nccl_->CommInitRank(&comm_, size_, msg.id, rank_);
    if (rc != ncclSuccess) {
      comm_ = nullptr;
      release();
      throw std::runtime_error(std::string("NCCL communicator: ncclCommInitRank failed: ") +
                               nccl_->GetErrorString(rc));
    }
  }

  // Unwinding from an error (this rank's, or a collective that failed because a peer did), the
  // communicator is aborted: a stream synchronisation or ncclCommDestroy could wait forever for
  // a dead peer. Otherwise it is destroyed after the outstanding work.
  ~NcclCommunicator() override {
    if (failed_ || std::uncaught_exceptions() > uncaught_at_start_)
      abort_comm();
    else
      release();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    const ncclDataType_t dt = check(t, "all_reduce", "tensor");
    if (t.numel() == 0) return;
    launch("ncclAllReduce", [&] {
      return nccl_->AllReduce(bytes(t), bytes(t), t.numel(), dt, nccl_op(op), comm_, stream_);
    });
  }

  void broadcast(at::Tensor& t, int root) override {
    const ncclDataType_t dt = check(t, "broadcast", "tensor");
    if (root < 0 || root >= size_)
      throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside [0, " +
                                  std::to_string(size_) + ")");
    if (t.numel() == 0) return;
    launch("ncclBroadcast", [&] {
      return nccl_->Broadcast(bytes(t), bytes(t), t.numel(), dt, root, comm_, stream_);
    });
  }

  void reduce_scatter(const at::Tensor& in, at::Tensor& out,
                      const std::vector<int64_t>& counts) override {
    const ncclDataType_t dt = check(in, "reduce_scatter", "input");
    check(out, "reduce_scatter", "output");
    check_same_type(in, out, "reduce_scatter");
    check_counts("reduce_scatter", counts, size_, rank_, in.numel(), out.numel());
    const int64_t m = *std::max_element(counts.begin(), counts.end());
    if (m == 0) return;
    const bool even = std::all_of(counts.begin(), counts.end(), [m](int64_t c) { return c == m; });
    // NCCL allows out == in + rank*m (in place); any other overlap goes through a temporary.
    const bool direct =
        even && (bytes(out) == bytes(in) + rank_ * m * in.element_size() || !overlaps(in, out));
    if (direct) {
      launch("ncclReduceScatter", [&] {
        return nccl_->ReduceScatter(bytes(in), bytes(out), m, dt, ncclSum, comm_, stream_);
      });
      return;
    }
    // Padded send buffer [size, m]: row r holds rank r's part; the padding is reduced and dropped.
    const std::vector<int64_t> off = collective_offsets(counts);
    at::Tensor send = at::zeros({size_, m}, in.options());
    const at::Tensor flat = in.view({-1});
    for (int r = 0; r < size_; ++r)
      if (counts[r]) send[r].narrow(0, 0, counts[r]).copy_(flat.narrow(0, off[r], counts[r]));
    at::Tensor recv = at::empty({m}, in.options());
    launch("ncclReduceScatter", [&] {
      return nccl_->ReduceScatter(bytes(send), bytes(recv), m, dt, ncclSum, comm_, stream_);
    });
    if (counts[rank_]) out.view({-1}).copy_(recv.narrow(0, 0, counts[rank_]));
  }

  void all_gather(const at::Tensor& in, at::Tensor& out,
                  const std::vector<int64_t>& counts) override {
    const ncclDataType_t dt = check(in, "all_gather", "input");
    check(out, "all_gather", "output");
    check_same_type(in, out, "all_gather");
    check_counts("all_gather", counts, size_, rank_, out.numel(), in.numel());
    const int64_t m = *std::max_element(counts.begin(), counts.end());
    if (m == 0) return;
    const bool even = std::all_of(counts.begin(), counts.end(), [m](int64_t c) { return c == m; });
    // NCCL allows in == out + rank*m (in place).
    const bool direct =
        even && (bytes(in) == bytes(out) + rank_ * m * out.element_size() || !overlaps(in, out));
    if (direct) {
      launch("ncclAllGather",
             [&] { return nccl_->AllGather(bytes(in), bytes(out), m, dt, comm_, stream_); });
      return;
    }
    at::Tensor send = at::zeros({m}, in.options());
    if (counts[rank_]) send.narrow(0, 0, counts[rank_]).copy_(in.view({-1}));
    at::Tensor recv = at::empty({size_, m}, in.options());
    launch("ncclAllGather",
           [&] { return nccl_->AllGather(bytes(send), bytes(recv), m, dt, comm_, stream_); });
    const std::vector<int64_t> off = collective_offsets(counts);
    at::Tensor flat = out.view({-1});
    for (int r = 0; r < size_; ++r)
      if (counts[r]) flat.narrow(0, off[r], counts[r]).copy_(recv[r].narrow(0, 0, counts[r]));
  }

  void barrier() override {
    {
      DeviceGuard guard(*cuda_, device_);
      cuda_check(cuda_->StreamSynchronize(stream_), "cudaStreamSynchronize");
    }
    check_async_error();
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

 private:
  // Makes `device` current for the scope, restoring the previous one.
  class DeviceGuard {
   public:
    DeviceGuard(const CudaRtApi& cuda, int device) : cuda_(cuda) {
      if (cuda_.GetDevice(&previous_) != kCudaSuccess) previous_ = -1;
      if (previous_ != device) cuda_.SetDevice(device);
    }
    ~DeviceGuard() {
      if (previous_ >= 0) cuda_.SetDevice(previous_);
    }

   private:
    const CudaRtApi& cuda_;
    int previous_ = -1;
  };

  void setup_local(int local_rank) {
    std::string why;
    nccl_ = nccl_api(&why);
    if (!nccl_) throw std::runtime_error(why);
    cuda_ = cuda_rt_api(&why);
    if (!cuda_) throw std::runtime_error(why);
    int count = 0;
    const cudaError_t rc = cuda_->GetDeviceCount(&count);
    if (rc != kCudaSuccess || count == 0)
      throw std::runtime_error(std::string("no CUDA device (cudaGetDeviceCount: ") +
                               (rc != kCudaSuccess ? cuda_->GetErrorString(rc) : "0 devices") +
                               ")");
    device_ = local_rank % count;
    DeviceGuard guard(*cuda_, device_);
    cuda_check(cuda_->StreamCreateWithFlags(&stream_, kCudaStreamNonBlocking),
               "cudaStreamCreateWithFlags");
    cuda_check(cuda_->EventCreateWithFlags(&inputs_ready_, kCudaEventDisableTiming),
               "cudaEventCreateWithFlags");
    cuda_check(cuda_->EventCreateWithFlags(&outputs_ready_, kCudaEventDisableTiming),
               "cudaEventCreateWithFlags");
  }

  // Without waiting: ncclCommAbort, then the stream and events (freed once their work is done).
  void abort_comm() noexcept {
    if (!cuda_) return;
    DeviceGuard guard(*cuda_, device_);
    if (comm_) nccl_->CommAbort(comm_);
    comm_ = nullptr;
    if (inputs_ready_) cuda_->EventDestroy(inputs_ready_);
    if (outputs_ready_) cuda_->EventDestroy(outputs_ready_);
    if (stream_) cuda_->StreamDestroy(stream_);
    inputs_ready_ = outputs_ready_ = nullptr;
    stream_ = nullptr;
  }

  void release() noexcept {
    if (!cuda_) return;
    DeviceGuard guard(*cuda_, device_);
    if (stream_) cuda_->StreamSynchronize(stream_);
    if (comm_) nccl_->CommDestroy(comm_);
    if (inputs_ready_) cuda_->EventDestroy(inputs_ready_);
    if (outputs_ready_) cuda_->EventDestroy(outputs_ready_);
    if (stream_) cuda_->StreamDestroy(stream_);
    comm_ = nullptr;
    inputs_ready_ = outputs_ready_ = nullptr;
    stream_ = nullptr;
  }

  void cuda_check(cudaError_t rc, const char* call) const {
    if (rc != kCudaSuccess)
      throw std::runtime_error(std::string(call) + " failed: " + cuda_->GetErrorString(rc));
  }

  void check_async_error() {
    ncclResult_t async = ncclSuccess;
    if (nccl_->CommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess) {
      nccl_->CommAbort(comm_);
      comm_ = nullptr;
      throw std::runtime_error(std::string("NCCL asynchronous error: ") +
                               nccl_->GetErrorString(async));
    }
  }

  // Stream 0 -> comm stream, the NCCL call, comm stream -> stream 0.
  template <typename Op>
  void launch(const char* name, Op&& op) {
    if (!comm_) throw std::runtime_error(std::string(name) + ": the NCCL communicator was aborted");
    DeviceGuard guard(*cuda_, device_);
    cuda_check(cuda_->EventRecord(inputs_ready_, kLegacyDefaultStream), "cudaEventRecord");
    cuda_check(cuda_->StreamWaitEvent(stream_, inputs_ready_, 0), "cudaStreamWaitEvent");
    const ncclResult_t rc = op();
    if (rc != ncclSuccess) {
      failed_ = true;
      throw std::runtime_error(std::string(name) + " failed: " + nccl_->GetErrorString(rc));
    }
    cuda_check(cuda_->EventRecord(outputs_ready_, stream_), "cudaEventRecord");
    cuda_check(cuda_->StreamWaitEvent(kLegacyDefaultStream, outputs_ready_, 0),
               "cudaStreamWaitEvent");
  }

  ncclDataType_t check(const at::Tensor& t, const char* op, const char* arg) const {
    const std::string where = std::string(op) + ": " + arg + " ";
    if (!t.defined()) throw std::invalid_argument(where + "is undefined");
    if (!t.device().is_cuda())
      throw std::invalid_argument(
          where + "is on " + t.device().str() +
          "; the NCCL backend takes CUDA tensors (use backend mpi for CPU)");
    if (t.device().has_index() && t.device().index() != device_)
      throw std::invalid_argument(
          where + "is on " + t.device().str() +
          " but this rank's NCCL device is cuda:" + std::to_string(device_));
    if (!t.is_contiguous()) throw std::invalid_argument(where + "is not contiguous");
    return nccl_type(t.scalar_type(), where.c_str());
  }

  int rank_, size_;
  const int uncaught_at_start_ = std::uncaught_exceptions();
  bool failed_ = false;  // a collective failed: abort rather than destroy
  int device_ = 0;
  const NcclApi* nccl_ = nullptr;
  const CudaRtApi* cuda_ = nullptr;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t inputs_ready_ = nullptr;
  cudaEvent_t outputs_ready_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const ProcessGroup& group) {
  if (!group.has_mpi())
    throw std::runtime_error(
        "NCCL communicator: needs the MPI process group (start with mpirun or srun)");
  return std::make_unique<NcclCommunicator>(group);
}

}  // namespace ringtune
