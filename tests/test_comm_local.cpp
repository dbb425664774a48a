// A process started without a launcher: ProcessGroup runs without MPI and make_communicator gives
// the local communicator, whose collectives are identities over one rank.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "distributed/comm.h"
#include "distributed/nccl_api.h"
#include "distributed/process_group.h"

namespace ringtune {
namespace {

bool under_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "RINGTUNE_FORCE_MPI"})
    if (std::getenv(v)) return true;
  return false;
}

TEST(LocalComm, NoMpiWithoutALauncher) {
  if (under_launcher()) GTEST_SKIP() << "started by an MPI launcher";
  ProcessGroup& g = ProcessGroup::init();
  EXPECT_TRUE(ProcessGroup::initialized());
  EXPECT_FALSE(g.has_mpi());
  EXPECT_EQ(g.rank(), 0);
  EXPECT_EQ(g.size(), 1);
  EXPECT_EQ(g.local_rank(), 0);
  EXPECT_EQ(g.local_size(), 1);
  EXPECT_EQ(g.all_gather_string("abc"), std::vector<std::string>{"abc"});
  EXPECT_TRUE(g.any(true));
  EXPECT_FALSE(g.any(false));
  EXPECT_EQ(g.sum(int64_t{41}), 41);
  EXPECT_EQ(g.sum(2.5), 2.5);
  g.barrier();
}

TEST(LocalComm, CollectivesAreIdentities) {
  if (under_launcher()) GTEST_SKIP() << "started by an MPI launcher";
  ProcessGroup::init();
  for (const char* backend : {"auto", "mpi", "nccl"}) {
    std::string choice;
    auto comm = make_communicator(backend, false, &choice);
    EXPECT_EQ(comm->backend(), "local") << backend;
    EXPECT_NE(choice.find("local"), std::string::npos) << choice;
    EXPECT_EQ(comm->size(), 1);
    torch::Tensor t = torch::arange(6, torch::kFloat);
    comm->all_reduce(t, ReduceOp::kMax);
    EXPECT_TRUE(t.equal(torch::arange(6, torch::kFloat)));
    comm->broadcast(t, 0);
    EXPECT_THROW(comm->broadcast(t, 1), std::invalid_argument);
    torch::Tensor out = torch::zeros({6});
    comm->reduce_scatter(t, out, {6});
    EXPECT_TRUE(out.equal(t));
    torch::Tensor gathered = torch::zeros({6});
    comm->all_gather(t, gathered, {6});
    EXPECT_TRUE(gathered.equal(t));
    EXPECT_THROW(comm->all_gather(t, gathered, {3, 3}), std::invalid_argument);
    EXPECT_THROW(comm->reduce_scatter(t, out, {5}), std::invalid_argument);
    comm->all_gather(t, t, {6});  // the same buffer: left as it is
    EXPECT_TRUE(t.equal(torch::arange(6, torch::kFloat)));
    comm->barrier();
  }
  EXPECT_THROW(make_communicator("gloo", false), std::runtime_error);
}

TEST(LocalComm, LocalRankFromHostNames) {
  const std::vector<std::string> hosts = {"n1", "n2", "n1", "n1", "n2"};
  EXPECT_EQ(ProcessGroup::local_rank_among(hosts, 0), std::make_pair(0, 3));
  EXPECT_EQ(ProcessGroup::local_rank_among(hosts, 3), std::make_pair(2, 3));
  EXPECT_EQ(ProcessGroup::local_rank_among(hosts, 4), std::make_pair(1, 2));
  EXPECT_THROW(ProcessGroup::local_rank_among(hosts, 5), std::invalid_argument);
}

TEST(LocalComm, NcclAvailabilityGivesAReason) {
  std::string why;
  if (nccl_available(&why)) GTEST_SKIP() << "libnccl is available here";
  EXPECT_NE(why.find("lib"), std::string::npos) << why;  // names the library that did not load
}

// Where libnccl and the CUDA runtime load, the log can name the files and NCCL's version.
TEST(LocalComm, LoadedNcclAndCudaRuntimeAreNamed) {
  std::string why;
  if (!nccl_available(&why)) GTEST_SKIP() << "libnccl or the CUDA runtime does not load here: " << why;
  const std::string nccl = nccl_source(), cudart = cuda_rt_source();
  std::cout << "[ loaded ] " << nccl << "; " << cudart << "\n";
  EXPECT_EQ(nccl.rfind("libnccl 2.", 0), 0u) << nccl;
  EXPECT_NE(nccl.find("(/"), std::string::npos) << nccl;
  EXPECT_EQ(cudart.rfind("libcudart (", 0), 0u) << cudart;
  EXPECT_NE(cudart.find("/"), std::string::npos) << cudart;
}

}  // namespace
}  // namespace ringtune
