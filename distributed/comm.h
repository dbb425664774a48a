// Collectives on tensors for data-parallel training. One interface, two backends:
//   MPI  - contiguous tensors of float32/float64/int32/int64/uint8 (what CI exercises on the CPU);
//          CUDA tensors are staged through host memory (ranks that share a GPU use this).
//   NCCL - CUDA tensors; libnccl is loaded at run time (distributed/nccl_api.h declares the few
//          types and functions used), rank 0's ncclUniqueId is broadcast over MPI, collectives run
//          on their own stream, ordered against the compute stream with events.
// All calls are collective: every rank of the communicator must make them in the same order.
// defines: ReduceOp, Communicator, make_communicator, nccl_available
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

enum class ReduceOp { kSum, kMax, kMin };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl", or "local" (one process, no MPI)
  // In place: t = op over ranks of t.
  virtual void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // `in` is flat with sum(counts) elements on every rank; `out` (counts[rank] elements) receives
  // the sum over ranks of in[offset(rank) : offset(rank) + counts[rank]]. Uneven counts allowed.
  virtual void reduce_scatter(const at::Tensor& in, at::Tensor& out, const std::vector<int64_t>& counts) = 0;
  // `in` has counts[rank] elements; `out` (flat, sum(counts) elements) receives every rank's `in`
  // in rank order. Uneven counts allowed.
  virtual void all_gather(const at::Tensor& in, at::Tensor& out, const std::vector<int64_t>& counts) = 0;
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
};

// backend: "auto" (NCCL when `device_is_cuda` and libnccl loads, MPI otherwise), "mpi", "nccl".
// Requires the MPI process group to be initialised (distributed/process_group.h). Throws
// std::runtime_error when "nccl" is asked for and cannot be had, saying why.
// A group without MPI (one process not started by a launcher) gets the "local" communicator
// whatever `backend` says. Collective: every rank must call it (auto agrees on NCCL over MPI).
// The MPI backend takes contiguous tensors of float32, float64, int32, int64 or uint8 (CUDA ones
// through host copies); NCCL takes contiguous CUDA tensors on its device (those types and
// float16, bfloat16, int8); other tensors are refused with std::invalid_argument.
std::unique_ptr<Communicator> make_communicator(const std::string& backend, bool device_is_cuda);
// The same; *choice (if given) receives one line saying which backend was chosen and why, for logs.
std::unique_ptr<Communicator> make_communicator(const std::string& backend, bool device_is_cuda,
                                                std::string* choice);

// True when libnccl can be dlopen'ed and the symbols used are present (no GPU needed to check).
bool nccl_available(std::string* why_not = nullptr);

}  // namespace ringtune
