// The communicator backends behind make_communicator (comm.h), exposed for tests that need one
// directly, and the argument checks they share.
// defines: make_local_communicator, make_mpi_communicator, make_nccl_communicator,
//          check_counts, collective_offsets, check_same_type, overlaps
#pragma once
#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/comm.h"

namespace ringtune {

class ProcessGroup;

// A world of one without MPI: all_reduce and broadcast leave the tensor as it is, reduce_scatter
// and all_gather copy (counts must have one entry).
std::unique_ptr<Communicator> make_local_communicator();

// MPI on MPI_COMM_WORLD (ProcessGroup must run over MPI). `max_count`: the most elements handed to
// one MPI call (MPI counts are int); larger collectives are split into several calls. Tests pass
// a small value to exercise the split; reduce_scatter / all_gather move at least one element per
// rank per call whatever the value.
std::unique_ptr<Communicator> make_mpi_communicator(int64_t max_count = INT_MAX);

// NCCL on the GPU `local_rank % device count` (ProcessGroup must run over MPI). Collective: every
// rank throws std::runtime_error if any rank cannot set NCCL up.
std::unique_ptr<Communicator> make_nccl_communicator(const ProcessGroup& group);

// Throws std::invalid_argument (naming `op`) unless counts has `world` non-negative entries summing
// to `flat_numel` and counts[rank] == `shard_numel`.
void check_counts(const char* op, const std::vector<int64_t>& counts, int world, int rank,
                  int64_t flat_numel, int64_t shard_numel);
// Exclusive prefix sums of counts.
std::vector<int64_t> collective_offsets(const std::vector<int64_t>& counts);
// Throws std::invalid_argument "op: input is X, output is Y" unless a and b have one dtype.
void check_same_type(const at::Tensor& in, const at::Tensor& out, const char* op);
// True when the memory of a and b overlaps (an empty tensor overlaps nothing).
bool overlaps(const at::Tensor& a, const at::Tensor& b);

}  // namespace ringtune
