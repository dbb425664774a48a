// StepPlan (src/train/step_plan.h): the step arithmetic as a pure function of the epochs' sizes
// and the global batch, checked on hand-computed cases: steps per epoch, epochs of different
// sizes (including an empty one), max_steps past the data, the rows of each step, each rank's
// slice, micro-batches, and that each epoch is sized once and only when needed.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "src/error.h"
#include "src/train/step_plan.h"

using namespace ringtune;

namespace {

// Epoch sizes from a table (the last entry repeats), counting how often each epoch is asked for.
struct Sizes {
  explicit Sizes(std::vector<int64_t> t) : table(std::move(t)) {}
  std::vector<int64_t> table;
  std::map<int64_t, int> calls;
  std::function<int64_t(int64_t)> fn() {
    return [this](int64_t e) {
      ++calls[e];
      return table[std::min<size_t>(static_cast<size_t>(e), table.size() - 1)];
    };
  }
};

}  // namespace

TEST(StepPlan, EpochsOfDifferentSizes) {
  Sizes s({10, 7, 12});
  StepPlan plan(s.fn(), 4);  // ceil: 3, 2, 3 steps
  EXPECT_TRUE(s.calls.empty()) << "sized before anything was asked";
  EXPECT_EQ(plan.total_steps(0, 3), 8);
  EXPECT_EQ(plan.steps_in(0), 3);
  EXPECT_EQ(plan.steps_in(1), 2);
  EXPECT_EQ(plan.steps_in(2), 3);
  const std::vector<int64_t> epochs = {0, 0, 0, 1, 1, 2, 2, 2};
  for (int64_t step = 0; step < 8; ++step) EXPECT_EQ(plan.epoch_of(step), epochs[step]) << step;
  EXPECT_EQ(plan.first_step(0), 0);
  EXPECT_EQ(plan.first_step(1), 3);
  EXPECT_EQ(plan.first_step(2), 5);
  EXPECT_EQ(plan.first_step(3), 8);
  // The last step of an epoch may be short.
  EXPECT_EQ(plan.rows(0), (Rows{0, 4}));
  EXPECT_EQ(plan.rows(2), (Rows{8, 10}));
  EXPECT_EQ(plan.rows(3), (Rows{0, 4}));
  EXPECT_EQ(plan.rows(4), (Rows{4, 7}));
  EXPECT_EQ(plan.rows(7), (Rows{8, 12}));
  for (int64_t step = 0; step < 8; ++step)
    EXPECT_EQ(plan.ends_epoch(step), step == 2 || step == 4 || step == 7) << step;
  // A finished run's step count maps to the number of epochs completed.
  EXPECT_EQ(plan.epoch_of(8), 3);
  for (const auto& [epoch, n] : s.calls) EXPECT_EQ(n, 1) << "epoch " << epoch << " sized " << n << " times";
}

TEST(StepPlan, MaxStepsLoopsOverTheDataAndSizesEpochsLazily) {
  Sizes s({5});  // 3 steps per epoch with global batch 2
  StepPlan plan(s.fn(), 2);
  EXPECT_EQ(plan.total_steps(10, 1), 10);
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(plan.epoch_of(0), 0);
  EXPECT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(plan.epoch_of(9), 3);
  EXPECT_EQ(plan.rows(9), (Rows{0, 2}));
  EXPECT_EQ(s.calls.size(), 4u);
  for (const auto& [epoch, n] : s.calls) EXPECT_EQ(n, 1) << "epoch " << epoch;
}

TEST(StepPlan, AnEmptyEpochHasNoSteps) {
  Sizes s({5, 0, 4});
  StepPlan plan(s.fn(), 2);  // 3, 0, 2 steps
  EXPECT_EQ(plan.total_steps(0, 3), 5);
  EXPECT_EQ(plan.steps_in(1), 0);
  EXPECT_EQ(plan.epoch_of(2), 0);
  EXPECT_EQ(plan.epoch_of(3), 2);  // epoch 1 is skipped
  EXPECT_EQ(plan.rows(3), (Rows{0, 2}));
  EXPECT_TRUE(plan.ends_epoch(2));
  EXPECT_TRUE(plan.ends_epoch(4));
}

TEST(StepPlan, RankRowsCoverTheStepWithSizesDifferingByAtMostOne) {
  Sizes s({23});
  StepPlan plan(s.fn(), 7);  // steps of 7, 7, 7, 2 rows
  for (int64_t step = 0; step < 4; ++step) {
    const Rows all = plan.rows(step);
    for (int world = 1; world <= 5; ++world) {
      size_t next = all.begin, smallest = all.size(), largest = 0;
      for (int rank = 0; rank < world; ++rank) {
        const Rows mine = plan.rank_rows(step, rank, world);
        EXPECT_EQ(mine.begin, next) << "step " << step << " world " << world << " rank " << rank;
        next = mine.end;
        smallest = std::min(smallest, mine.size());
        largest = std::max(largest, mine.size());
      }
      EXPECT_EQ(next, all.end) << "step " << step << " world " << world;
      EXPECT_LE(largest - smallest, 1u) << "step " << step << " world " << world;
    }
  }
  // The first (n % world) ranks take one more: 7 rows over 3 ranks are 3, 2, 2.
  EXPECT_EQ(plan.rank_rows(1, 0, 3), (Rows{7, 10}));
  EXPECT_EQ(plan.rank_rows(1, 1, 3), (Rows{10, 12}));
  EXPECT_EQ(plan.rank_rows(1, 2, 3), (Rows{12, 14}));
  // More ranks than rows: the last ones get nothing.
  EXPECT_EQ(plan.rank_rows(3, 3, 4).size(), 0u);
}

TEST(StepPlan, MicroBatches) {
  const auto mb = StepPlan::micro_batches(Rows{3, 10}, 3);
  ASSERT_EQ(mb.size(), 3u);
  EXPECT_EQ(mb[0], (Rows{3, 6}));
  EXPECT_EQ(mb[1], (Rows{6, 9}));
  EXPECT_EQ(mb[2], (Rows{9, 10}));
  EXPECT_TRUE(StepPlan::micro_batches(Rows{4, 4}, 2).empty());
  EXPECT_THROW(StepPlan::micro_batches(Rows{0, 4}, 0), Error);
}

TEST(StepPlan, RefusesABadGlobalBatch) {
  Sizes s({4});
  EXPECT_THROW(StepPlan(s.fn(), 0), Error);
}
