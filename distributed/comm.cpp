// make_communicator (backend choice), nccl_available, the local communicator of a one-process
// group, and the count checks the backends share.
#include "distributed/comm.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "distributed/comm_backends.h"
#include "distributed/nccl_api.h"
#include "distributed/process_group.h"

namespace ringtune {

// ---- shared checks ----

std::vector<int64_t> collective_offsets(const std::vector<int64_t>& counts) {
  std::vector<int64_t> off(counts.size());
  int64_t acc = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    off[r] = acc;
    acc += counts[r];
  }
  return off;
}

void check_counts(const char* op, const std::vector<int64_t>& counts, int world, int rank,
                  int64_t flat_numel, int64_t shard_numel) {
  const std::string where = std::string(op) + ": ";
  if (static_cast<int>(counts.size()) != world)
    throw std::invalid_argument(where + std::to_string(counts.size()) + " counts for " +
                                std::to_string(world) + " ranks");
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0)
      throw std::invalid_argument(where + "negative count " + std::to_string(counts[r]) +
                                  " for rank " + std::to_string(r));
    total += counts[r];
  }
  if (total != flat_numel)
    throw std::invalid_argument(where + "counts sum to " + std::to_string(total) +
                                " but the flat tensor has " + std::to_string(flat_numel) +
                                " elements");
  if (counts[rank] != shard_numel)
    throw std::invalid_argument(where + "rank " + std::to_string(rank) + " has count " +
                                std::to_string(counts[rank]) + " but its shard tensor has " +
                                std::to_string(shard_numel) + " elements");
}

void check_same_type(const at::Tensor& in, const at::Tensor& out, const char* op) {
  if (in.scalar_type() != out.scalar_type())
    throw std::invalid_argument(std::string(op) + ": input is " +
                                std::string(c10::toString(in.scalar_type())) + ", output is " +
                                std::string(c10::toString(out.scalar_type())));
}

bool overlaps(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data_ptr());
  const char* b0 = static_cast<const char*>(b.data_ptr());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// ---- local communicator ----

namespace {

void copy_flat(const at::Tensor& in, at::Tensor& out, const char* op) {
  if (!in.defined() || !out.defined())
    throw std::invalid_argument(std::string(op) + ": undefined tensor");
  check_same_type(in, out, op);
  if (!out.is_contiguous())
    throw std::invalid_argument(std::string(op) + ": output is not contiguous");
  if (in.data_ptr() == out.data_ptr() && in.is_contiguous()) return;
  const at::Tensor src = overlaps(in, out) ? in.reshape({-1}).clone() : in.reshape({-1});
  out.view({-1}).copy_(src);
}

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  void all_reduce(at::Tensor& t, ReduceOp) override {
    if (!t.defined()) throw std::invalid_argument("all_reduce: undefined tensor");
  }
  void reduce_scatter(const at::Tensor& in, at::Tensor& out,
                      const std::vector<int64_t>& counts) override {
    check_counts("reduce_scatter", counts, 1, 0, in.numel(), out.numel());
    copy_flat(in, out, "reduce_scatter");
  }
  void all_gather(const at::Tensor& in, at::Tensor& out,
                  const std::vector<int64_t>& counts) override {
    check_counts("all_gather", counts, 1, 0, out.numel(), in.numel());
    copy_flat(in, out, "all_gather");
  }
  void broadcast(at::Tensor& t, int root) override {
    if (root != 0)
      throw std::invalid_argument("broadcast: root " + std::to_string(root) + " in a world of 1");
  }
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() {
  return std::make_unique<LocalCommunicator>();
}

// ---- choice ----

bool nccl_available(std::string* why_not) {
  return nccl_api(why_not) != nullptr && cuda_rt_api(why_not) != nullptr;
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, bool device_is_cuda) {
  return make_communicator(backend, device_is_cuda, nullptr);
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, bool device_is_cuda,
                                                std::string* choice) {
  if (backend != "auto" && backend != "mpi" && backend != "nccl")
    throw std::runtime_error("unknown communicator backend '" + backend +
                             "' (expected auto, mpi or nccl)");
  if (!ProcessGroup::initialized())
    throw std::runtime_error("make_communicator: ProcessGroup::init() has not run");
  const ProcessGroup& group = ProcessGroup::init();
  auto note = [choice](const std::string& s) {
    if (choice) *choice = s;
  };
  if (!group.has_mpi()) {
    note("communicator: local (one process, not started by mpirun/srun)");
    return make_local_communicator();
  }
  if (backend == "mpi") {
    note("communicator: mpi (asked for)");
    return make_mpi_communicator();
  }
  if (backend == "nccl") {
    auto comm = make_nccl_communicator(group);
    note("communicator: nccl (asked for); " + nccl_source() + ", " + cuda_rt_source());
    return comm;
  }
  // auto: NCCL only if every rank has CUDA tensors and can load NCCL, so all ranks agree.
  std::string why_not;
  const bool local_ok = device_is_cuda && nccl_available(&why_not);
  if (!device_is_cuda) why_not = "tensors are on the CPU";
  if (!group.any(!local_ok)) {
    // The set-up failures before ncclCommInitRank (no GPU, no stream) are agreed on by all ranks,
    // so every rank falls back together.
    try {
      auto comm = make_nccl_communicator(group);
      note("communicator: nccl (auto: CUDA tensors and libnccl available); " + nccl_source() + ", " +
           cuda_rt_source());
      return comm;
    } catch (const std::runtime_error& e) {
      note(std::string("communicator: mpi (auto: ") + e.what() + ")");
      return make_mpi_communicator();
    }
  }
  if (local_ok) why_not = "NCCL cannot be used on every rank";
  note("communicator: mpi (auto: " + why_not + ")");
  return make_mpi_communicator();
}

}  // namespace ringtune
