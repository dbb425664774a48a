// Training core: global sample order, packing, packed-vs-unpacked loss and gradient equality on
// the stories260k model, AdamW against libtorch's own torch::optim::AdamW, LR schedules.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "model/llama.h"
#include "src/error.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include <nlohmann/json.hpp>
#include "src/optim/adamw.h"
#include "src/train/packing.h"
#include "src/train/loss.h"
#include "src/optim/lr_schedule.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

// Samples of the given lengths with random ids < 512; the second half of each is supervised.
PreparedDataset synthetic(const std::vector<int64_t>& lengths, uint64_t seed = 1) {
  PreparedDataset d;
  d.offsets.push_back(0);
  torch::manual_seed(seed);
  for (int64_t len : lengths) {
    auto ids = torch::randint(3, 512, {len}, torch::kInt32);
    for (int64_t i = 0; i < len; ++i) {
      d.ids.push_back(ids[i].item<int32_t>());
      d.loss_mask.push_back(i >= len / 2 ? 1 : 0);
    }
    d.offsets.push_back(d.offsets.back() + len);
    d.source_line.push_back(static_cast<int64_t>(d.source_line.size()) + 1);
  }
  return d;
}

}  // namespace

TEST(TrainCore, SampleOrderIsADeterministicPermutation) {
  auto a = sample_order(1000, 42, 0), b = sample_order(1000, 42, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, sample_order(1000, 42, 1));
  EXPECT_NE(a, sample_order(1000, 43, 0));
  std::set<int64_t> seen(a.begin(), a.end());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  EXPECT_EQ(sample_order(5, 1, 0, false), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(TrainCore, PackingKeepsEverySampleOnceWithRestartedPositions) {
  auto d = synthetic({5, 9, 3, 12, 7, 1});
  auto seqs = pack_sequences(d, sample_order(d.size(), 0, 0, false), 16, true, 0);
  std::vector<int64_t> all;
  for (const auto& s : seqs) {
    ASSERT_EQ(s.tokens.size(), 16u);
    all.insert(all.end(), s.samples.begin(), s.samples.end());
    int64_t sup = 0;
    for (size_t t = 0; t < 16; ++t) {
      if (s.segments[t] < 0) {
        EXPECT_EQ(s.labels[t], kIgnoreLabel);
        continue;
      }
      const int64_t idx = s.samples[s.segments[t]];
      const int64_t at = d.offsets[idx] + s.positions[t];
      EXPECT_EQ(s.tokens[t], d.ids[at]);
      const bool last = at + 1 == d.offsets[idx + 1];
      const int32_t expected = (!last && d.loss_mask[at + 1]) ? d.ids[at + 1] : kIgnoreLabel;
      EXPECT_EQ(s.labels[t], expected);
      sup += s.labels[t] != kIgnoreLabel;
    }
    EXPECT_EQ(sup, s.supervised);
  }
  EXPECT_EQ(all, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  // 5+9 | 3+12 | 7+1 with context 16.
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(seqs[0].samples, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(seqs[1].samples, (std::vector<int64_t>{2, 3}));
  auto unpacked = pack_sequences(d, sample_order(d.size(), 0, 0, false), 16, false, 0);
  EXPECT_EQ(unpacked.size(), 6u);
  EXPECT_THROW(pack_sequences(d, {3}, 8, true, 0), Error);
}

TEST(TrainCore, PackedBatchGivesTheSameLossAndGradientsAsUnpacked) {
  auto d = synthetic({11, 7, 14, 5});
  auto order = sample_order(d.size(), 0, 0, false);
  auto packed = pack_sequences(d, order, 48, true, 0);
  auto unpacked = pack_sequences(d, order, 48, false, 0);
  ASSERT_EQ(packed.size(), 1u);
  ASSERT_EQ(unpacked.size(), 4u);
  auto run = [&](const std::vector<PackedSequence>& seqs) {
    auto model = load_hf_model(stories_dir());
    SequenceBatch b;
    int64_t sup = 0;
    for (const auto& s : seqs) {
      b.rows.push_back(&s);
      sup += s.supervised;
    }
    auto loss = batch_loss_sum(model, b) / static_cast<double>(sup);
    loss.backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& p : model->named_parameters()) grads[p.key()] = p.value().grad().clone();
    return std::make_pair(loss.item<double>(), grads);
  };
  auto [lp, gp] = run(packed);
  auto [lu, gu] = run(unpacked);
  EXPECT_NEAR(lp, lu, 1e-5);
  // Gradients: relative error (norm of difference over norm), as for the reference gradients.
  double worst_rel = 0, worst_abs = 0;
  for (const auto& [name, g] : gp) {
    const double rel = ((g - gu[name]).norm() / gu[name].norm()).item<double>();
    worst_rel = std::max(worst_rel, rel);
    worst_abs = std::max(worst_abs, (g - gu[name]).abs().max().item<double>());
    EXPECT_LT(rel, 1e-5) << name;
  }
  std::cout << "[ packing ] loss packed " << lp << " unpacked " << lu << ", worst relative grad error "
            << worst_rel << ", max |grad diff| " << worst_abs << "\n";
}

TEST(TrainCore, AdamWMatchesTorchOptimAdamW) {
  torch::manual_seed(7);
  auto w0 = torch::randn({6, 5}), n0 = torch::randn({5});
  auto w1 = w0.clone().requires_grad_(true), n1 = n0.clone().requires_grad_(true);
  auto w2 = w0.clone().requires_grad_(true), n2 = n0.clone().requires_grad_(true);
  AdamWOptions o;
  o.weight_decay = 0.1;
  o.beta2 = 0.99;
  AdamW ours({{"layer.weight", w1}, {"model.norm.weight", n1}}, o);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{w2},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{n2},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW ref(groups, torch::optim::AdamWOptions(1e-2));
  for (int step = 0; step < 6; ++step) {
    auto x = torch::randn({4, 6});
    for (auto* pair : {&w1, &w2}) (void)pair;
    auto l1 = (torch::matmul(x, w1) * n1).pow(2).sum();
    auto l2 = (torch::matmul(x, w2) * n2).pow(2).sum();
    w1.mutable_grad() = torch::Tensor();
    n1.mutable_grad() = torch::Tensor();
    ref.zero_grad();
    l1.backward();
    l2.backward();
    ours.step(1e-2);
    ref.step();
  }
  EXPECT_LT((w1 - w2).abs().max().item<double>(), 1e-6);
  EXPECT_LT((n1 - n2).abs().max().item<double>(), 1e-6);
  EXPECT_GT((w1 - w0).abs().max().item<double>(), 1e-3);  // it did move
  EXPECT_EQ(ours.step_count(), 6);
  EXPECT_EQ(ours.state().size(), 4u);
}

TEST(TrainCore, LearningRateSchedules) {
  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 10, 10, 110), 1.0);
  EXPECT_NEAR(lr_at("cosine", 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(lr_at("cosine", 1.0, 110, 10, 110), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2.0, 35, 10, 60), 1.0);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2.0, 70, 10, 60), 0.0);
  EXPECT_DOUBLE_EQ(lr_at("constant", 3.0, 500, 0, 10), 3.0);
  EXPECT_THROW(lr_at("step", 1.0, 1, 0, 2), Error);
}

TEST(TrainCore, FullFineTuningStepZeroGradientsMatchLlama2c) {
  // The reference tokens as a prepared dataset in which every token after the first is
  // supervised; through packing and the batch loss the mean loss is the fixture's
  // loss_mean_next_token and the gradients are its grad.* tensors.
  SafeTensorsFile ref(stories_dir() + "/reference.safetensors");
  auto tokens = ref.load("tokens");
  PreparedDataset d;
  d.offsets.push_back(0);
  for (int64_t r = 0; r < tokens.size(0); ++r) {
    for (int64_t t = 0; t < tokens.size(1); ++t) {
      d.ids.push_back(static_cast<int32_t>(tokens[r][t].item<int64_t>()));
      d.loss_mask.push_back(t > 0 ? 1 : 0);
    }
    d.offsets.push_back(d.offsets.back() + tokens.size(1));
    d.source_line.push_back(r + 1);
  }
  auto seqs = pack_sequences(d, sample_order(d.size(), 0, 0, false), tokens.size(1), true, 0);
  ASSERT_EQ(seqs.size(), 2u);
  auto model = load_hf_model(stories_dir());
  SequenceBatch b;
  int64_t sup = 0;
  for (const auto& s : seqs) {
    b.rows.push_back(&s);
    sup += s.supervised;
  }
  EXPECT_EQ(sup, 2 * 47);
  auto loss = batch_loss_sum(model, b) / static_cast<double>(sup);
  loss.backward();
  const double expected_loss = nlohmann::json::parse(read_file(stories_dir() + "/reference.json"))["loss_mean_next_token"].get<double>();
  EXPECT_NEAR(loss.item<double>(), expected_loss, 1e-5);
  auto params = model->named_parameters();
  int checked = 0;
  for (const auto& [name, info] : ref.tensors()) {
    if (name.rfind("grad.", 0) != 0) continue;
    auto g = params[name.substr(5)].grad();
    auto e = ref.load(name);
    EXPECT_LT(((g - e).norm() / e.norm()).item<double>(), 1e-4) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 7);
}
