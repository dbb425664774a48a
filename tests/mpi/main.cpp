// main() of ringtune_mpi_tests: starts the process group before gtest, prints the full report on
// rank 0 only (other ranks print their failures, prefixed with the rank), names after each test
// the ranks it failed on, and exits non-zero on every rank if any rank failed, so mpirun does too.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "distributed/process_group.h"

namespace {

using ringtune::ProcessGroup;

// Non-zero ranks: only failed assertions, with the rank.
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
    std::fflush(stderr);
  }

 private:
  int rank_;
};

// After each test (collectively): rank 0 names the ranks on which it failed.
class RankAgreement : public testing::EmptyTestEventListener {
 public:
  void OnTestEnd(const testing::TestInfo& info) override {
    const ProcessGroup& g = ProcessGroup::init();
    const bool failed = info.result()->Failed();
    const auto flags = g.all_gather_string(failed ? "1" : "0");
    std::string ranks;
    for (size_t r = 0; r < flags.size(); ++r)
      if (flags[r] == "1") ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    if (g.rank() == 0 && !ranks.empty()) {
      std::printf("[ RANKS    ] %s.%s failed on rank(s) %s of %d\n", info.test_suite_name(),
                  info.name(), ranks.c_str(), g.size());
      std::fflush(stdout);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  ProcessGroup& group = ProcessGroup::init();
  testing::InitGoogleTest(&argc, argv);
  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  if (group.rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(group.rank()));
  }
  listeners.Append(new RankAgreement);
  const int rc = RUN_ALL_TESTS();
  const bool any_failed = group.any(rc != 0);
  if (group.rank() == 0 && any_failed && rc == 0)
    std::printf("ringtune_mpi_tests: a test failed on another rank\n");
  return any_failed ? 1 : 0;
}
