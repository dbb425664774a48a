// Checks of each collective against closed forms, for any communicator, device and dtype: values
// depend on the rank and the element index, so a wrong offset or a missing rank gives a wrong
// answer. Used for MPI (test_collectives.cpp) and NCCL (test_nccl.cpp).
// defines: check_all_reduce_sum, check_all_reduce_max_min, check_reduce_scatter, check_all_gather,
//          check_broadcast, check_in_place_views
#pragma once
#include "distributed/comm.h"
#include "mpi_test_util.h"

namespace ringtune::mpitest {

// Small values for 8-bit and 16-bit floating types, so that sums over 4 ranks stay exact.
inline bool small(at::ScalarType dtype) {
  return dtype == at::kByte || dtype == at::kChar || dtype == at::kHalf || dtype == at::kBFloat16;
}

inline void check_all_reduce_sum(Communicator& comm, at::Device device, at::ScalarType dtype) {
  const int w = comm.size(), r = comm.rank();
  const int64_t n = 37;
  const int64_t mod = small(dtype) ? 7 : 1000;
  // value(rank, i) = (rank + 1) * (1 + i % mod); sum over ranks = w (w + 1) / 2 * (1 + i % mod).
  at::Tensor t = at::empty({n}, at::kDouble);
  at::Tensor want = at::empty({n}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    t[i] = static_cast<double>((r + 1) * (1 + i % mod));
    want[i] = static_cast<double>(w * (w + 1) / 2 * (1 + i % mod));
  }
  t = t.to(dtype).to(device);
  comm.all_reduce(t, ReduceOp::kSum);
  expect_equal(t, want, std::string("all_reduce sum ") + c10::toString(dtype));
}

inline double max_min_value(int64_t i, int rank, bool is_signed) {
  return static_cast<double>((i * 3 + rank * 5) % 11) - (is_signed ? 5 : 0);
}

inline void check_all_reduce_max_min(Communicator& comm, at::Device device, at::ScalarType dtype) {
  const int w = comm.size(), r = comm.rank();
  const bool is_signed = dtype != at::kByte;
  const int64_t n = 29;
  for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kMin}) {
    at::Tensor t = at::empty({n}, at::kDouble), want = at::empty({n}, at::kDouble);
    for (int64_t i = 0; i < n; ++i) {
      t[i] = max_min_value(i, r, is_signed);
      double best = max_min_value(i, 0, is_signed);
      for (int q = 1; q < w; ++q)
        best = op == ReduceOp::kMax ? std::max(best, max_min_value(i, q, is_signed))
                                    : std::min(best, max_min_value(i, q, is_signed));
      want[i] = best;
    }
    t = t.to(dtype).to(device);
    comm.all_reduce(t, op);
    expect_equal(t, want,
                 std::string(op == ReduceOp::kMax ? "all_reduce max " : "all_reduce min ") +
                     c10::toString(dtype));
  }
}

// in on rank q: in[j] = q*K + j; rank r receives sum_q (q*K + off_r + k) = K w(w-1)/2 + w (off_r +
// k).
inline void check_reduce_scatter(Communicator& comm, at::Device device, at::ScalarType dtype,
                                 const std::vector<int64_t>& counts) {
  const int w = comm.size(), r = comm.rank();
  const std::vector<int64_t> off = offsets_of(counts);
  const int64_t total = off.back() + counts.back();
  const double k_rank = small(dtype) ? 8 : 1000;
  at::Tensor in = at::arange(total, at::kDouble) + k_rank * r;
  at::Tensor want = at::empty({counts[r]}, at::kDouble);
  for (int64_t k = 0; k < counts[r]; ++k) want[k] = k_rank * w * (w - 1) / 2 + w * (off[r] + k);
  in = in.to(dtype).to(device);
  at::Tensor out = at::full({counts[r]}, 77, at::TensorOptions().dtype(dtype).device(device));
  comm.reduce_scatter(in, out, counts);
  expect_equal(out, want, std::string("reduce_scatter ") + c10::toString(dtype));
}

// in on rank r: r*K + k; out[off_q + k] = q*K + k for every q.
inline void check_all_gather(Communicator& comm, at::Device device, at::ScalarType dtype,
                             const std::vector<int64_t>& counts) {
  const int w = comm.size(), r = comm.rank();
  const std::vector<int64_t> off = offsets_of(counts);
  const int64_t total = off.back() + counts.back();
  const double k_rank = small(dtype) ? 16 : 1000;
  at::Tensor in = (at::arange(counts[r], at::kDouble) + k_rank * r).to(dtype).to(device);
  at::Tensor want = at::empty({total}, at::kDouble);
  for (int q = 0; q < w; ++q)
    for (int64_t k = 0; k < counts[q]; ++k) want[off[q] + k] = k_rank * q + k;
  at::Tensor out = at::full({total}, 77, at::TensorOptions().dtype(dtype).device(device));
  comm.all_gather(in, out, counts);
  expect_equal(out, want, std::string("all_gather ") + c10::toString(dtype));
}

inline void check_broadcast(Communicator& comm, at::Device device, at::ScalarType dtype, int root) {
  const int r = comm.rank();
  const int64_t n = 10;
  at::Tensor want = (at::arange(n, at::kDouble) * 3 + 1 + root);
  at::Tensor t = (r == root ? want.clone() : at::full({n}, 99.0, at::kDouble)).to(dtype).to(device);
  comm.broadcast(t, root);
  expect_equal(
      t, want,
      std::string("broadcast from root ") + std::to_string(root) + " " + c10::toString(dtype));
}

// The ZeRO calls on views: reduce_scatter into the rank's own slice of the input buffer, and
// all_gather from the rank's slice of the output buffer (MPI_IN_PLACE on MPI).
inline void check_in_place_views(Communicator& comm, at::Device device,
                                 const std::vector<int64_t>& counts) {
  const int w = comm.size(), r = comm.rank();
  const std::vector<int64_t> off = offsets_of(counts);
  const int64_t total = off.back() + counts.back();
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  // reduce_scatter(buf, buf[off_r : off_r + c_r]): buf[j] = r*100 + j on rank r.
  at::Tensor buf = (at::arange(total, at::kDouble) + 100.0 * r).to(opts);
  at::Tensor mine = buf.narrow(0, off[r], counts[r]);
  comm.reduce_scatter(buf, mine, counts);
  at::Tensor want = at::empty({counts[r]}, at::kDouble);
  for (int64_t k = 0; k < counts[r]; ++k) want[k] = 100.0 * w * (w - 1) / 2 + w * (off[r] + k);
  expect_equal(mine, want, "reduce_scatter into a view of its input");
  // all_gather(buf[off_r : off_r + c_r], buf): rank r's slice holds r*100 + k, the rest garbage.
  at::Tensor gathered = at::full({total}, -1.0, opts);
  gathered.narrow(0, off[r], counts[r]).copy_(at::arange(counts[r], at::kDouble) + 100.0 * r);
  at::Tensor in = gathered.narrow(0, off[r], counts[r]);
  comm.all_gather(in, gathered, counts);
  at::Tensor want_all = at::empty({total}, at::kDouble);
  for (int q = 0; q < w; ++q)
    for (int64_t k = 0; k < counts[q]; ++k) want_all[off[q] + k] = 100.0 * q + k;
  expect_equal(gathered, want_all, "all_gather from a view of its output");
}

}  // namespace ringtune::mpitest
