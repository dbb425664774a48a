// The CPU block pool (src/cpu_pool.h): large tensors reuse freed blocks, small ones go to the
// default allocator, the pool never holds more than the most bytes live at once (+1/16 of what a
// peak adds), and the binary installs it unless RINGTUNE_CPU_POOL=0.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <vector>

#include "src/cpu_pool.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

torch::Tensor bytes(int64_t n) { return torch::empty({n}, torch::TensorOptions().dtype(torch::kUInt8)); }
int64_t pages(int64_t n) { return (n + 4095) / 4096 * 4096; }

}  // namespace

TEST(CpuPool, LargeTensorsReuseFreedBlocksSmallOnesDoNot) {
  ASSERT_TRUE(install_cpu_pool());
  cpu_pool_trim();
  const auto s0 = cpu_pool_stats();
  void* first = nullptr;
  {
    auto a = bytes(3 << 20);
    first = a.data_ptr();
    a.fill_(7);
  }
  const auto s1 = cpu_pool_stats();
  EXPECT_EQ(s1.maps, s0.maps + 1);
  EXPECT_EQ(s1.cached, s0.cached + pages(3 << 20));
  {
    auto b = bytes((3 << 20) - 5000);  // within 1/8 of the cached block: the same memory
    EXPECT_EQ(b.data_ptr(), first);
    b.fill_(1);  // (reductions over it would allocate large temporaries of their own)
    const auto* p = b.data_ptr<uint8_t>();
    EXPECT_EQ(p[0] + p[(3 << 20) - 5001], 2);
    auto small = bytes(cpu_pool_min_bytes - 1);  // not the pool's
    EXPECT_NE(small.data_ptr(), first);
  }
  const auto s2 = cpu_pool_stats();
  EXPECT_EQ(s2.reuses, s1.reuses + 1);
  EXPECT_EQ(s2.maps, s1.maps);
  // Twice the size does not fit the cached block: a new one.
  { auto c = bytes(6 << 20); }
  EXPECT_EQ(cpu_pool_stats().maps, s2.maps + 1);
  cpu_pool_trim();
  EXPECT_EQ(cpu_pool_stats().cached, 0);
}

// Random sizes from 1 to 9 MiB, up to 12 live at once, freed in random order: the pool's bytes
// (live + cached) never pass the most bytes live at once plus 1/16 of what that peak added since
// the trim, and every tensor keeps its own contents.
TEST(CpuPool, HoldsNoMoreThanThePeakOfLiveBytes) {
  ASSERT_TRUE(install_cpu_pool());
  cpu_pool_trim();
  const int64_t base = cpu_pool_stats().live;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> size(cpu_pool_min_bytes, 9 << 20);
  std::vector<std::pair<torch::Tensor, uint8_t>> live;  // tensor, its fill value
  int64_t peak_live = base, worst_excess = 0;
  for (int round = 0; round < 400; ++round) {
    if (live.size() < 12 && (live.empty() || rng() % 3 != 0)) {
      auto t = bytes(size(rng));
      const auto v = static_cast<uint8_t>(rng() % 200 + 1);
      t.fill_(v);
      live.emplace_back(t, v);
    } else {
      const size_t i = rng() % live.size();
      const auto& [t, v] = live[i];
      const uint8_t* p = t.data_ptr<uint8_t>();
      for (int64_t k = 0; k < t.numel(); k += 4093) ASSERT_EQ(p[k], v);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    }
    const auto s = cpu_pool_stats();
    peak_live = std::max(peak_live, s.live);
    const int64_t cap = peak_live + (peak_live - base) / 16;
    worst_excess = std::max(worst_excess, s.live + s.cached - cap);
  }
  EXPECT_LE(worst_excess, 0) << "the pool held " << worst_excess << " bytes beyond its cap";
  EXPECT_GT(cpu_pool_stats().reuses, 0);
}

// A training step's pattern, repeated: a forward pass keeps tensors of a few sizes with
// temporaries between them, the backward pass frees them in reverse order. After the first step
// most blocks are found in the pool (measured: 30 of 216 requests of steps 3-5 map a block, where
// the cap makes room for a size the cache lacks by unmapping one that a later request wanted).
TEST(CpuPool, RepeatedStepsReuseTheirBlocks) {
  ASSERT_TRUE(install_cpu_pool());
  cpu_pool_trim();
  const std::vector<int64_t> sizes = {2 << 20, 4 << 20, 2 << 20, (5 << 20) + 12288, 2 << 20, 9 << 20};
  int64_t maps_later = 0, allocations_later = 0;
  for (int step = 0; step < 5; ++step) {
    const auto before = cpu_pool_stats();
    std::vector<torch::Tensor> kept;
    int64_t allocations = 0;
    for (int layer = 0; layer < 8; ++layer) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        auto t = bytes(sizes[i]);
        ++allocations;
        if (i % 2 == 0) kept.push_back(t);  // saved for backward; the odd ones are temporaries
      }
    }
    while (!kept.empty()) {
      auto grad = bytes(kept.back().numel() + 4096);
      ++allocations;
      kept.pop_back();
    }
    if (step >= 2) {
      maps_later += cpu_pool_stats().maps - before.maps;
      allocations_later += allocations;
    }
  }
  EXPECT_LE(maps_later * 4, allocations_later) << maps_later << " of " << allocations_later << " mapped";
}

TEST(CpuPool, TheBinaryInstallsItUnlessTurnedOff) {
  TempDir dir("ringtune-cpu-pool");
  write_tiny_llama(dir.file("m"), 300);
  const auto on = run_ringtune("--log-level debug inspect " + dir.file("m"));
  const auto off = run_shell("RINGTUNE_CPU_POOL=0 " + ringtune_binary() + " --log-level debug inspect " + dir.file("m"));
  ASSERT_EQ(on.exit_code, 0) << on.err;
  ASSERT_EQ(off.exit_code, 0) << off.err;
  EXPECT_NE(on.err.find("CPU block pool: peak"), std::string::npos) << on.err;
  EXPECT_EQ(off.err.find("CPU block pool"), std::string::npos) << off.err;
}
