// ProcessGroup under mpirun: rank and size from MPI, local rank, and the host-side collectives.
#include <unistd.h>

#include <cstdlib>

#include "mpi_test_util.h"

namespace ringtune::mpitest {
namespace {

TEST(ProcessGroupMpi, StartedByTheLauncher) {
  EXPECT_TRUE(ProcessGroup::initialized());
  EXPECT_TRUE(group().has_mpi());
  EXPECT_EQ(&ProcessGroup::init(), &group());  // idempotent
  ASSERT_GE(world(), 1);
  ASSERT_LT(me(), world());
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    EXPECT_EQ(world(), std::atoi(s));
  }
  if (const char* r = std::getenv("OMPI_COMM_WORLD_RANK")) {
    EXPECT_EQ(me(), std::atoi(r));
  }
}

TEST(ProcessGroupMpi, LocalRankAgreesWithHostNames) {
  char host[256] = {0};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  const auto hosts = group().all_gather_string(host);
  const auto local = ProcessGroup::local_rank_among(hosts, me());
  EXPECT_EQ(group().local_rank(), local.first);
  EXPECT_EQ(group().local_size(), local.second);
}

TEST(ProcessGroupMpi, AllGatherStringInRankOrder) {
  // Rank r sends r copies of 'a'+r and its square: rank 0's string is empty apart from "|0".
  auto text = [](int r) {
    return std::string(r, static_cast<char>('a' + r)) + "|" + std::to_string(r * r);
  };
  const auto got = group().all_gather_string(text(me()));
  ASSERT_EQ(static_cast<int>(got.size()), world());
  for (int r = 0; r < world(); ++r) EXPECT_EQ(got[r], text(r)) << "entry " << r;
  // Empty strings everywhere but on the last rank, which sends 100 kB.
  const std::string big(100000, 'x');
  const auto got2 = group().all_gather_string(me() == world() - 1 ? big : std::string());
  for (int r = 0; r < world(); ++r) EXPECT_EQ(got2[r], r == world() - 1 ? big : std::string()) << r;
}

TEST(ProcessGroupMpi, AnyIsALogicalOr) {
  EXPECT_TRUE(group().any(me() == world() - 1));
  EXPECT_FALSE(group().any(false));
  EXPECT_TRUE(group().any(true));
}

TEST(ProcessGroupMpi, SumOverRanks) {
  const int w = world();
  EXPECT_EQ(group().sum(static_cast<int64_t>(me() + 1) << 40), static_cast<int64_t>(w * (w + 1) / 2)
                                                                   << 40);
  EXPECT_EQ(group().sum(0.25 * (me() + 1)), 0.125 * w * (w + 1));
  group().barrier();
}

}  // namespace
}  // namespace ringtune::mpitest
