// Helpers shared by the MPI tests: the process group of the run and a few tensor builders.
// defines: group, world, me, counts_with_zeros, offsets_of, expect_equal
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "distributed/process_group.h"

namespace ringtune::mpitest {

inline const ProcessGroup& group() { return ProcessGroup::init(); }
inline int world() { return group().size(); }
inline int me() { return group().rank(); }

// Counts that differ by rank, with zeros on ranks 1, 4, ...: {2}, {2,0}, {2,0,4}, {2,0,4,5}.
inline std::vector<int64_t> counts_with_zeros(int w) {
  std::vector<int64_t> c(w);
  for (int r = 0; r < w; ++r) c[r] = (r % 3 == 1) ? 0 : r + 2;
  return c;
}

inline std::vector<int64_t> offsets_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> off(counts.size());
  int64_t acc = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    off[r] = acc;
    acc += counts[r];
  }
  return off;
}

// Exact element-wise equality (every test value is an exactly representable integer).
inline void expect_equal(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const at::Tensor g = got.to(at::kDouble).cpu().reshape({-1});
  const at::Tensor w = want.to(at::kDouble).cpu().reshape({-1});
  const double* gp = g.data_ptr<double>();
  const double* wp = w.data_ptr<double>();
  int shown = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    if (gp[i] != wp[i] && shown++ < 5)
      ADD_FAILURE() << what << " (rank " << me() << "/" << world() << "): element " << i << " is "
                    << gp[i] << ", expected " << wp[i];
  }
}

}  // namespace ringtune::mpitest
