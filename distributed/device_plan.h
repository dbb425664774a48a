// Which device a training rank computes on and which communicator backend the job uses, as pure
// functions of the request (the config's `device` and `distributed.backend`) and of what the
// launcher and the machine say (this rank's place on its host, the GPUs it sees). The trainer
// feeds them ProcessGroup's local rank and size and the CUDA device count; the tests feed tables.
//
// Rules:
//   - device auto: CUDA when a GPU is visible, else the CPU; cuda without a visible GPU is refused.
//   - a rank's GPU is local_rank % visible GPUs, so several ranks may share one (more ranks than
//     GPUs on a host): allowed, and said at start.
//   - NCCL cannot run two ranks of one communicator on one GPU. Where ranks share a GPU on any
//     host, backend auto uses MPI with the tensors staged through host memory, and backend nccl is
//     refused saying why. NCCL is also refused for CPU tensors. A world of one rank reduces
//     nothing: nccl is then kept only where it can run (CUDA), else MPI stands in.
//   - backend auto otherwise: NCCL for CUDA tensors when libnccl loads (make_communicator decides,
//     every rank agreeing), MPI for CPU tensors.
// defines: DeviceChoice, choose_device, BackendChoice, choose_backend
#pragma once
#include <string>

namespace ringtune {

struct DeviceChoice {
  std::string device = "cpu";  // "cpu" or "cuda:<gpu>"
  int gpu = -1;                // -1 on the CPU
  bool shares_gpu = false;     // CUDA, with more ranks on this host than visible GPUs
};

// want: "auto", "cpu" or "cuda". std::invalid_argument for "cuda" without a visible GPU or an
// unknown value (the message says which).
DeviceChoice choose_device(const std::string& want, int local_rank, int local_size, int visible_gpus);

struct BackendChoice {
  std::string backend;  // for make_communicator: "mpi", "nccl", or "auto" (NCCL if it loads)
  bool staged = false;  // MPI on CUDA tensors: each collective goes through host memory
  std::string reason;   // one line for the log
};

// backend: "auto", "mpi" or "nccl"; cuda: the ranks compute on GPUs; gpus_shared: on some host
// ranks outnumber GPUs (the same value on every rank); world: the number of ranks.
// std::invalid_argument for nccl on the CPU or with shared GPUs (world > 1), and for an unknown
// value.
BackendChoice choose_backend(const std::string& backend, bool cuda, bool gpus_shared, int world);

}  // namespace ringtune
