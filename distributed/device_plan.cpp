// Device and backend rules; see device_plan.h.
#include "distributed/device_plan.h"

#include <stdexcept>

namespace ringtune {

DeviceChoice choose_device(const std::string& want, int local_rank, int local_size, int visible_gpus) {
  if (want != "auto" && want != "cpu" && want != "cuda")
    throw std::invalid_argument("\"" + want + "\" is not a device (auto, cpu or cuda)");
  DeviceChoice c;
  if (want == "cpu" || (want == "auto" && visible_gpus <= 0)) return c;
  if (visible_gpus <= 0)
    throw std::invalid_argument("cuda, but no CUDA device is visible (a CPU-only libtorch, no GPU, or "
                                "CUDA_VISIBLE_DEVICES hides them); use device: auto or cpu");
  c.gpu = local_rank % visible_gpus;
  c.device = "cuda:" + std::to_string(c.gpu);
  c.shares_gpu = local_size > visible_gpus;
  return c;
}

BackendChoice choose_backend(const std::string& backend, bool cuda, bool gpus_shared, int world) {
  if (backend != "auto" && backend != "mpi" && backend != "nccl")
    throw std::invalid_argument("\"" + backend + "\" is not a backend (auto, mpi or nccl)");
  BackendChoice c;
  if (backend == "nccl" && world <= 1 && (!cuda || gpus_shared)) {
    c.backend = "mpi";
    c.reason = "mpi (one rank reduces nothing; nccl needs a GPU of its own)";
    return c;
  }
  if (backend == "nccl") {
    if (!cuda) throw std::invalid_argument("nccl reduces CUDA tensors, and this run computes on the CPU; use mpi or auto");
    if (gpus_shared)
      throw std::invalid_argument(
          "nccl cannot run two ranks of one communicator on one GPU, and ranks outnumber the GPUs on a host; "
          "start at most one rank per GPU, or use auto or mpi (MPI through host memory)");
    c.backend = "nccl";
    c.reason = "nccl (asked for)";
    return c;
  }
  if (backend == "mpi" || !cuda || gpus_shared) {
    c.backend = "mpi";
    c.staged = cuda;
    c.reason = backend == "mpi" ? "mpi (asked for)"
               : !cuda          ? "mpi (auto: tensors on the CPU)"
                                : "mpi (auto: ranks share a GPU, which NCCL cannot do)";
    if (c.staged) c.reason += ", CUDA tensors staged through host memory";
    return c;
  }
  c.backend = "auto";
  c.reason = "auto: nccl for CUDA tensors if libnccl loads on every rank, else mpi through host memory";
  return c;
}

}  // namespace ringtune
