// The MPI communicator at the world size of the run (ctest runs np = 1..4): every collective with
// uneven counts (zeros on some ranks), every supported dtype, max/min, broadcast from a non-zero
// root, calls split over several MPI calls, views (the ZeRO calls), and the argument checks.
#include <stdexcept>

#include "collective_checks.h"
#include "distributed/comm_backends.h"

namespace ringtune::mpitest {
namespace {

const at::Device kCpu(at::kCPU);
const at::ScalarType kMpiTypes[] = {at::kFloat, at::kDouble, at::kInt, at::kLong, at::kByte};

TEST(MpiComm, FactoryPicksMpiUnderALauncher) {
  ASSERT_TRUE(group().has_mpi()) << "ringtune_mpi_tests must run under mpirun";
  std::string choice;
  auto comm = make_communicator("auto", false, &choice);
  EXPECT_EQ(comm->backend(), "mpi");
  EXPECT_NE(choice.find("mpi"), std::string::npos) << choice;
  EXPECT_EQ(comm->rank(), me());
  EXPECT_EQ(comm->size(), world());
  EXPECT_EQ(make_communicator("mpi", false)->backend(), "mpi");
  EXPECT_THROW(make_communicator("gloo", false), std::runtime_error);
}

TEST(MpiComm, AllReduceSumEveryDtype) {
  auto comm = make_communicator("mpi", false);
  for (at::ScalarType t : kMpiTypes) check_all_reduce_sum(*comm, kCpu, t);
}

TEST(MpiComm, AllReduceMaxMin) {
  auto comm = make_communicator("mpi", false);
  for (at::ScalarType t : kMpiTypes) check_all_reduce_max_min(*comm, kCpu, t);
}

TEST(MpiComm, AllReduceTwoDimensional) {
  auto comm = make_communicator("mpi", false);
  at::Tensor t = at::full({3, 4}, static_cast<double>(me() + 1), at::kDouble);
  comm->all_reduce(t);
  expect_equal(t, at::full({3, 4}, world() * (world() + 1) / 2.0, at::kDouble), "2-D all_reduce");
}

TEST(MpiComm, ReduceScatterUnevenCountsWithZeros) {
  auto comm = make_communicator("mpi", false);
  for (at::ScalarType t : kMpiTypes)
    check_reduce_scatter(*comm, kCpu, t, counts_with_zeros(world()));
}

TEST(MpiComm, ReduceScatterEvenAndOneRankHoldsAll) {
  auto comm = make_communicator("mpi", false);
  check_reduce_scatter(*comm, kCpu, at::kFloat, std::vector<int64_t>(world(), 3));
  std::vector<int64_t> last_only(world(), 0);
  last_only.back() = 6;
  check_reduce_scatter(*comm, kCpu, at::kDouble, last_only);
}

TEST(MpiComm, AllGatherUnevenCountsWithZeros) {
  auto comm = make_communicator("mpi", false);
  for (at::ScalarType t : kMpiTypes) check_all_gather(*comm, kCpu, t, counts_with_zeros(world()));
}

TEST(MpiComm, AllGatherEvenAndOneRankHoldsAll) {
  auto comm = make_communicator("mpi", false);
  check_all_gather(*comm, kCpu, at::kLong, std::vector<int64_t>(world(), 4));
  std::vector<int64_t> first_only(world(), 0);
  first_only.front() = 5;
  check_all_gather(*comm, kCpu, at::kFloat, first_only);
}

TEST(MpiComm, BroadcastFromEveryRoot) {
  auto comm = make_communicator("mpi", false);
  for (int root = world() - 1; root >= 0; --root)  // the last rank first: non-zero when world > 1
    for (at::ScalarType t : kMpiTypes) check_broadcast(*comm, kCpu, t, root);
}

TEST(MpiComm, ViewsOfTheSameBuffer) {
  auto comm = make_communicator("mpi", false);
  check_in_place_views(*comm, kCpu, counts_with_zeros(world()));
  check_in_place_views(*comm, kCpu, std::vector<int64_t>(world(), 2));
}

// max_count 3: every collective below is split over several MPI calls (rounds for the uneven ones).
TEST(MpiComm, SplitOverSeveralCalls) {
  auto comm = make_mpi_communicator(3);
  std::vector<int64_t> counts(world());
  for (int r = 0; r < world(); ++r)
    counts[r] = (r % 3 == 1) ? 0 : 4 + 2 * r;  // total > 3 at every world size
  for (at::ScalarType t : {at::kFloat, at::kLong, at::kByte}) {
    check_all_reduce_sum(*comm, kCpu, t);
    check_all_reduce_max_min(*comm, kCpu, t);
    check_reduce_scatter(*comm, kCpu, t, counts);
    check_all_gather(*comm, kCpu, t, counts);
    check_broadcast(*comm, kCpu, t, world() - 1);
  }
  check_in_place_views(*comm, kCpu, counts);
}

// Argument errors are found before any MPI call, identically on every rank, so nothing hangs.
TEST(MpiComm, RejectsBadArguments) {
  auto comm = make_communicator("mpi", false);
  at::Tensor strided = at::zeros({4, 3}, at::kFloat).t();
  EXPECT_THROW(comm->all_reduce(strided), std::invalid_argument);
  at::Tensor half = at::zeros({4}, at::kHalf);
  EXPECT_THROW(comm->all_reduce(half), std::invalid_argument);
  at::Tensor flags = at::zeros({4}, at::kBool);
  EXPECT_THROW(comm->broadcast(flags, 0), std::invalid_argument);
  at::Tensor t = at::zeros({4}, at::kFloat);
  EXPECT_THROW(comm->broadcast(t, world()), std::invalid_argument);

  const std::vector<int64_t> counts = counts_with_zeros(world());
  const int64_t total = offsets_of(counts).back() + counts.back();
  at::Tensor in = at::zeros({total}, at::kFloat);
  at::Tensor out = at::zeros({counts[me()]}, at::kFloat);
  std::vector<int64_t> short_counts(counts.begin(), counts.end() - 1);
  EXPECT_THROW(comm->reduce_scatter(in, out, short_counts), std::invalid_argument);
  at::Tensor bigger = at::zeros({total + 1}, at::kFloat);
  EXPECT_THROW(comm->reduce_scatter(bigger, out, counts), std::invalid_argument);
  at::Tensor wrong_shard = at::zeros({counts[me()] + 1}, at::kFloat);
  EXPECT_THROW(comm->all_gather(wrong_shard, in, counts), std::invalid_argument);
  at::Tensor out_double = at::zeros({counts[me()]}, at::kDouble);
  EXPECT_THROW(comm->reduce_scatter(in, out_double, counts), std::invalid_argument);
  try {
    at::Tensor i16 = at::zeros({2}, at::kShort);
    comm->all_reduce(i16);
    ADD_FAILURE() << "int16 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Short"), std::string::npos) << e.what();
  }
  comm->barrier();  // still in step
}

}  // namespace
}  // namespace ringtune::mpitest
