// The NCCL communicator: the same checks as MPI on CUDA tensors where libnccl, the CUDA runtime, a
// GPU and a CUDA build of libtorch exist; skipped with the reason elsewhere. Without NCCL, asking
// for it must fail on every rank with the reason, and "auto" must fall back to MPI.
#include <stdexcept>

#include "collective_checks.h"
#include "distributed/nccl_api.h"

namespace ringtune::mpitest {
namespace {

// Empty when NCCL can run here; the reason otherwise (the same on every rank: any() agrees).
std::string nccl_unusable() {
  std::string why;
  if (!nccl_available(&why)) return why;
  if (!at::hasCUDA()) return "this libtorch has no CUDA";
  const int gpus = at::detail::getCUDAHooks().getNumGPUs();
  if (group().local_size() > gpus)
    return std::to_string(group().local_size()) + " ranks on this host and " + std::to_string(gpus) +
           " GPU(s): NCCL cannot run two ranks of one communicator on one GPU";
  return std::string();
}

TEST(Nccl, CollectivesOnCudaTensors) {
  const std::string why = nccl_unusable();
  if (group().any(!why.empty()))
    GTEST_SKIP() << "NCCL not usable: " << (why.empty() ? "on another rank" : why);
  auto comm = make_communicator("nccl", true);
  ASSERT_EQ(comm->backend(), "nccl");
  const at::Device dev(
      at::kCUDA,
      static_cast<at::DeviceIndex>(group().local_rank() % at::detail::getCUDAHooks().getNumGPUs()));
  for (at::ScalarType t :
       {at::kFloat, at::kDouble, at::kInt, at::kLong, at::kByte, at::kChar, at::kHalf}) {
    check_all_reduce_sum(*comm, dev, t);
    check_all_reduce_max_min(*comm, dev, t);
    check_reduce_scatter(*comm, dev, t, counts_with_zeros(world()));
    check_reduce_scatter(*comm, dev, t, std::vector<int64_t>(world(), 3));
    check_all_gather(*comm, dev, t, counts_with_zeros(world()));
    check_all_gather(*comm, dev, t, std::vector<int64_t>(world(), 3));
    check_broadcast(*comm, dev, t, world() - 1);
  }
  check_in_place_views(*comm, dev, counts_with_zeros(world()));
  check_in_place_views(*comm, dev, std::vector<int64_t>(world(), 2));
  at::Tensor cpu = at::zeros({4}, at::kFloat);
  EXPECT_THROW(comm->all_reduce(cpu), std::invalid_argument);
  comm->barrier();
}

// Number of GPUs the CUDA runtime sees (0 when it cannot be loaded or has no device).
int gpu_count() {
  const CudaRtApi* cuda = cuda_rt_api();
  int n = 0;
  if (!cuda || cuda->GetDeviceCount(&n) != kCudaSuccess) return 0;
  return n;
}

// libnccl and libcudart load but there is no GPU (as on CPU-only CI machines with CUDA installed):
// the backend must be refused on every rank, naming the missing device, without hanging.
TEST(Nccl, LibrariesWithoutAGpuAreRefusedOnEveryRank) {
  std::string why;
  if (group().any(!nccl_available(&why))) GTEST_SKIP() << "NCCL libraries not loadable: " << why;
  if (group().any(gpu_count() > 0)) GTEST_SKIP() << "a GPU is present";
  try {
    make_communicator("nccl", true);
    ADD_FAILURE() << "backend nccl accepted without a GPU";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
  // auto with CUDA tensors falls back to MPI on every rank, saying why.
  std::string choice;
  auto comm = make_communicator("auto", true, &choice);
  EXPECT_EQ(comm->backend(), "mpi");
  EXPECT_NE(choice.find("no CUDA device"), std::string::npos) << choice;
  comm->barrier();  // every rank got here: still in step
}

TEST(Nccl, UnavailableIsReportedOnEveryRank) {
  std::string why;
  if (group().any(nccl_available(&why))) GTEST_SKIP() << "libnccl is available here";
  try {
    make_communicator("nccl", true);
    ADD_FAILURE() << "backend nccl accepted without libnccl";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what() << " / " << why;
  }
  std::string choice;
  auto comm = make_communicator("auto", true, &choice);
  EXPECT_EQ(comm->backend(), "mpi");
  EXPECT_NE(choice.find("libnccl"), std::string::npos) << choice;
  comm->barrier();
}

}  // namespace
}  // namespace ringtune::mpitest
