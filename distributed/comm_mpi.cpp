// The MPI communicator: contiguous tensors, MPI_COMM_WORLD. CPU tensors are passed to MPI as
// they are; CUDA tensors are staged through host memory (copied to the host, reduced there,
// copied back), which is how ranks that share a GPU (where NCCL cannot run) communicate. Counts
// above `max_count` (MPI counts are int) are split over several calls; reduce_scatter /
// all_gather then move the ranks' parts in rounds through a packed temporary buffer.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "distributed/comm_backends.h"
#include "distributed/mpi_check.h"
#include "distributed/progress.h"

namespace ringtune {

namespace {

MPI_Datatype mpi_type(const at::Tensor& t, const char* op, const char* arg) {
  const std::string where = std::string(op) + ": " + arg + " ";
  if (!t.defined()) throw std::invalid_argument(where + "is undefined");
  if (!t.device().is_cpu())
    throw std::invalid_argument(where + "is on " + t.device().str() +
                                "; the MPI backend takes CPU tensors and stages CUDA ones");
  if (!t.is_contiguous()) throw std::invalid_argument(where + "is not contiguous");
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kInt:
      return MPI_INT32_T;
    case at::kLong:
      return MPI_INT64_T;
    case at::kByte:
      return MPI_UINT8_T;
    default:
      throw std::invalid_argument(where + "has dtype " +
                                  std::string(c10::toString(t.scalar_type())) +
                                  "; the MPI backend takes float32, float64, int32, int64, uint8");
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  throw std::invalid_argument("unknown ReduceOp");
}

char* bytes(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

bool on_cuda(const at::Tensor& t) { return t.defined() && t.is_cuda(); }

// A host copy of a CUDA tensor (contiguous, as MPI needs), or an empty host tensor like it.
at::Tensor host_copy(const at::Tensor& t) { return t.to(at::kCPU).contiguous(); }
at::Tensor host_like(const at::Tensor& t) { return at::empty(t.sizes(), t.options().device(at::kCPU)); }

std::vector<int> to_int(const std::vector<int64_t>& v) {
  return std::vector<int>(v.begin(), v.end());
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(int64_t max_count)
      : max_count_(std::max<int64_t>(1, std::min<int64_t>(max_count, INT_MAX))) {
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    if (on_cuda(t)) {
      at::Tensor h = host_copy(t);
      all_reduce(h, op);
      t.copy_(h);
      return;
    }
    const MPI_Datatype dt = mpi_type(t, "all_reduce", "tensor");
    CollectiveScope waiting("all_reduce", t.numel());
    for_each_chunk(t, [&](char* p, int c) {
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, p, c, dt, mpi_op(op), MPI_COMM_WORLD), "MPI_Allreduce");
    });
  }

  void broadcast(at::Tensor& t, int root) override {
    if (on_cuda(t)) {
      at::Tensor h = host_copy(t);
      broadcast(h, root);
      t.copy_(h);
      return;
    }
    const MPI_Datatype dt = mpi_type(t, "broadcast", "tensor");
    CollectiveScope waiting("broadcast", t.numel());
    if (root < 0 || root >= size_)
      throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside [0, " +
                                  std::to_string(size_) + ")");
    for_each_chunk(t, [&](char* p, int c) {
      mpi_check(MPI_Bcast(p, c, dt, root, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }

  void reduce_scatter(const at::Tensor& in, at::Tensor& out_arg,
                      const std::vector<int64_t>& counts) override {
    if (on_cuda(in) || on_cuda(out_arg)) {
      at::Tensor h = host_like(out_arg);
      reduce_scatter(host_copy(in), h, counts);
      out_arg.copy_(h);
      return;
    }
    const MPI_Datatype dt = mpi_type(in, "reduce_scatter", "input");
    mpi_type(out_arg, "reduce_scatter", "output");
    check_same_type(in, out_arg, "reduce_scatter");
    check_counts("reduce_scatter", counts, size_, rank_, in.numel(), out_arg.numel());
    // MPI forbids overlapping send and receive buffers: reduce into a temporary then.
    at::Tensor out = overlaps(in, out_arg) ? at::empty_like(out_arg) : out_arg;
    CollectiveScope waiting("reduce_scatter", in.numel());
    const int64_t total = in.numel(), es = in.element_size();
    if (total <= max_count_) {
      const std::vector<int> c = to_int(counts);
      mpi_check(MPI_Reduce_scatter(bytes(in), bytes(out), c.data(), dt, MPI_SUM, MPI_COMM_WORLD),
                "MPI_Reduce_scatter");
    } else {
      // Round k moves elements [k*C, (k+1)*C) of every rank's part, packed back to back.
      const std::vector<int64_t> off = collective_offsets(counts);
      const int64_t chunk = std::max<int64_t>(1, max_count_ / size_);
      const int64_t longest = *std::max_element(counts.begin(), counts.end());
      std::vector<char> packed;
      std::vector<int> c(size_);
      for (int64_t k = 0; k * chunk < longest; ++k) {
        int64_t sum = 0;
        for (int r = 0; r < size_; ++r) {
          c[r] = static_cast<int>(std::clamp<int64_t>(counts[r] - k * chunk, 0, chunk));
          sum += c[r];
        }
        packed.resize(static_cast<size_t>(sum * es));
        int64_t pos = 0;
        for (int r = 0; r < size_; ++r) {
          if (c[r])
            std::memcpy(packed.data() + pos * es, bytes(in) + (off[r] + k * chunk) * es, c[r] * es);
          pos += c[r];
        }
        // No offset into an empty part: the pointer could land on MPI_IN_PLACE's value.
        char* recv = c[rank_] ? bytes(out) + k * chunk * es : bytes(out);
        mpi_check(MPI_Reduce_scatter(packed.data(), recv, c.data(), dt, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Reduce_scatter");
      }
    }
    if (!out.is_same(out_arg)) out_arg.copy_(out);
  }

  void all_gather(const at::Tensor& in_arg, at::Tensor& out,
                  const std::vector<int64_t>& counts) override {
    if (on_cuda(in_arg) || on_cuda(out)) {
      at::Tensor h = host_like(out);
      all_gather(host_copy(in_arg), h, counts);
      out.copy_(h);
      return;
    }
    const MPI_Datatype dt = mpi_type(in_arg, "all_gather", "input");
    mpi_type(out, "all_gather", "output");
    check_same_type(in_arg, out, "all_gather");
    check_counts("all_gather", counts, size_, rank_, out.numel(), in_arg.numel());
    const std::vector<int64_t> off = collective_offsets(counts);
    const int64_t total = out.numel(), es = out.element_size();
    // `in` already at its place inside `out` (the usual ZeRO call): MPI_IN_PLACE. Any other
    // overlap: send from a copy.
    const bool in_place = in_arg.numel() > 0 && bytes(in_arg) == bytes(out) + off[rank_] * es;
    const at::Tensor in = (!in_place && overlaps(in_arg, out)) ? in_arg.clone() : in_arg;
    CollectiveScope waiting("all_gather", out.numel());
    if (total <= max_count_) {
      const std::vector<int> c = to_int(counts), d = to_int(off);
      mpi_check(MPI_Allgatherv(in_place ? MPI_IN_PLACE : bytes(in), c[rank_], dt, bytes(out),
                               c.data(), d.data(), dt, MPI_COMM_WORLD),
                "MPI_Allgatherv");
      return;
    }
    const int64_t chunk = std::max<int64_t>(1, max_count_ / size_);
    const int64_t longest = *std::max_element(counts.begin(), counts.end());
    std::vector<char> packed;
    std::vector<int> c(size_), d(size_);
    for (int64_t k = 0; k * chunk < longest; ++k) {
      int64_t sum = 0;
      for (int r = 0; r < size_; ++r) {
        c[r] = static_cast<int>(std::clamp<int64_t>(counts[r] - k * chunk, 0, chunk));
        d[r] = static_cast<int>(sum);
        sum += c[r];
      }
      packed.resize(static_cast<size_t>(sum * es));
      mpi_check(MPI_Allgatherv(c[rank_] ? bytes(in) + k * chunk * es : bytes(in), c[rank_], dt,
                               packed.data(), c.data(), d.data(), dt, MPI_COMM_WORLD),
                "MPI_Allgatherv");
      for (int r = 0; r < size_; ++r)
        if (c[r])
          std::memmove(bytes(out) + (off[r] + k * chunk) * es, packed.data() + d[r] * es,
                       c[r] * es);
    }
  }

  void barrier() override {
    CollectiveScope waiting("barrier", 0);
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

 private:
  // Calls f(first byte, count) for consecutive pieces of t of at most max_count_ elements (MPI
  // counts are int).
  template <class F>
  void for_each_chunk(const at::Tensor& t, F f) const {
    const int64_t n = t.numel(), es = t.element_size();
    for (int64_t off = 0; off < n; off += max_count_)
      f(bytes(t) + off * es, static_cast<int>(std::min(max_count_, n - off)));
  }

  int64_t max_count_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int64_t max_count) {
  int up = 0;
  MPI_Initialized(&up);
  if (!up)
    throw std::runtime_error(
        "MPI communicator: MPI is not initialised (ProcessGroup::init() without a launcher)");
  return std::make_unique<MpiCommunicator>(max_count);
}

}  // namespace ringtune
