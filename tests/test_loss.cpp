// The chunked cross-entropy (src/train/loss.h): the same loss and gradients as cross-entropy over
// the whole [batch, length, vocab] logits, whatever the chunk size, for LoRA (the output layer
// adapted too) and full fine-tuning, with dropout replayed identically in the recomputation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "model/llama.h"
#include "model/lora.h"
#include "src/train/loss.h"
#include "src/train/packing.h"
#include "src/train/xent_kernel.h"

using namespace ringtune;

namespace {

LlamaForCausalLM model_for(bool lora) {
  LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  LlamaForCausalLM m(c);
  m->init_weights(17, 0.1);
  if (lora) {
    LoraOptions o;
    o.r = 4;
    o.lora_dropout = 0.2;  // replayed in the backward recomputation
    o.target_modules = {"q_proj", "v_proj", "lm_head"};
    o.init_lora_weights = "false";
    apply_lora(m, o);
  }
  m->train();
  return m;
}

std::vector<PackedSequence> sequences() {
  std::vector<PackedSequence> out(3);
  torch::manual_seed(3);
  for (size_t r = 0; r < out.size(); ++r) {
    auto& s = out[r];
    const int len = 20;
    for (int t = 0; t < len; ++t) {
      s.tokens.push_back(static_cast<int32_t>(torch::randint(0, 61, {1}).item<int64_t>()));
      s.positions.push_back(t);
      s.segments.push_back(t < 12 ? 0 : 1);
      // Supervised in the second half of each segment only; the last token has no target.
      const bool sup = (t % 12) >= 6 && t + 1 < len;
      s.labels.push_back(sup ? static_cast<int32_t>((t * 7 + static_cast<int>(r)) % 61) : -100);
      s.supervised += sup;
    }
    s.used = len;
  }
  return out;
}

// The loss and every trainable parameter's gradient with chunks of `rows` (0: the default).
std::pair<double, std::vector<torch::Tensor>> run(bool lora, int64_t rows) {
  auto m = model_for(lora);
  const auto seqs = sequences();
  SequenceBatch b;
  for (const auto& s : seqs) b.rows.push_back(&s);
  set_loss_chunk_rows(rows);
  torch::manual_seed(99);  // the dropout masks
  auto loss = batch_loss_sum(m, b);
  loss.backward();
  set_loss_chunk_rows(0);
  std::vector<torch::Tensor> grads;
  for (const auto& p : m->parameters())
    if (p.requires_grad()) grads.push_back(p.grad().clone());
  return {loss.item<double>(), grads};
}

}  // namespace

TEST(ChunkedLoss, SameLossAndGradientsForAnyChunkSize) {
  for (const bool lora : {true, false}) {
    const auto whole = run(lora, 0);  // 61-word vocabulary: one chunk holds every row
    for (const int64_t rows : {1, 5, 7}) {
      const auto chunked = run(lora, rows);
      EXPECT_NEAR(chunked.first, whole.first, 1e-4 * std::abs(whole.first)) << lora << " " << rows;
      ASSERT_EQ(chunked.second.size(), whole.second.size());
      for (size_t i = 0; i < whole.second.size(); ++i) {
        const double n = whole.second[i].norm().item<double>();
        EXPECT_GT(n, 0) << "parameter " << i << " has no gradient";
        EXPECT_LT((chunked.second[i] - whole.second[i]).norm().item<double>(), 1e-4 * n + 1e-7)
            << (lora ? "lora" : "full") << " rows " << rows << " parameter " << i;
      }
    }
  }
}

TEST(ChunkedLoss, EqualsCrossEntropyOverTheFullLogits) {
  auto m = model_for(true);
  m->eval();  // no dropout: both sides see the same network
  const auto seqs = sequences();
  SequenceBatch b;
  for (const auto& s : seqs) b.rows.push_back(&s);
  set_loss_chunk_rows(4);
  const double chunked = batch_loss_sum(m, b).item<double>();
  set_loss_chunk_rows(0);
  auto t = b.tensors();
  auto logits = m->forward(t[0], t[1], AttentionMask{t[2]});
  const double direct = torch::nn::functional::cross_entropy(
                            logits.reshape({-1, 61}), t[3].reshape({-1}),
                            torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum))
                            .item<double>();
  EXPECT_NEAR(chunked, direct, 1e-4 * std::abs(direct));
}

// A frozen output layer (LoRA on the body only): the loss's gradient is made in the forward pass
// (FrozenHeadCrossEntropy). Loss and every adapter gradient against autograd through
// cross-entropy over the whole logits, in float32 and in bfloat16 (the base in bf16, float32
// adapters), with several chunk sizes.
TEST(ChunkedLoss, FrozenOutputLayerGradientsEqualAutogradThroughFullLogits) {
  for (const bool bf16 : {false, true}) {
    for (const int64_t rows : {0, 5}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " rows " + std::to_string(rows));
      const auto build = [&] {
        auto m = model_for(false);
        if (bf16) m->to(torch::kBFloat16);
        LoraOptions o;
        o.r = 4;
        o.target_modules = {"q_proj", "v_proj", "down_proj"};
        o.init_lora_weights = "false";
        apply_lora(m, o);
        m->eval();
        return m;
      };
      auto m = build(), ref = build();  // the same seeds: identical weights
      ASSERT_FALSE(m->lm_head_weight().requires_grad());
      const auto seqs = sequences();
      SequenceBatch b;
      for (const auto& s : seqs) b.rows.push_back(&s);
      set_loss_chunk_rows(rows);
      auto loss = batch_loss_sum(m, b);
      set_loss_chunk_rows(0);
      (loss / 17.0).backward();  // a scale, as the trainer divides by the supervised tokens
      auto t = b.tensors();
      auto logits = ref->forward(t[0], t[1], AttentionMask{t[2]}).to(torch::kFloat32);
      auto direct = torch::nn::functional::cross_entropy(
          logits.reshape({-1, 61}), t[3].reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
      (direct / 17.0).backward();
      EXPECT_NEAR(loss.item<double>(), direct.item<double>(), (bf16 ? 1e-3 : 1e-6) * direct.item<double>());
      const auto mine = m->named_parameters(), theirs = ref->named_parameters();
      int compared = 0;
      for (const auto& p : mine) {
        if (!p.value().requires_grad()) continue;
        const auto& g = p.value().grad();
        const auto& want = theirs[p.key()].grad();
        ASSERT_TRUE(g.defined() && want.defined()) << p.key();
        const double n = want.norm().item<double>();
        EXPECT_GT(n, 0) << p.key();
        EXPECT_LT((g - want).norm().item<double>(), (bf16 ? 2e-2 : 1e-5) * n) << p.key();
        ++compared;
      }
      EXPECT_EQ(compared, 2 * 2 * 3);  // A and B of three adapters in two layers
    }
  }
}

// The fused kernel (src/train/xent_kernel.h) against libtorch's log-softmax in float64: every
// instruction-set variant this CPU runs, vocabularies with and without a tail of V % 16 values,
// logits from tiny to ±80 (where a naive exp overflows), labels at both ends. Float32: loss within
// 2e-7 relative (ATen's own float32 path: about 1e-7), gradient within 2e-7 absolute (the largest
// values are ~1). bf16 storage: the gradient is the float64 one rounded to bf16, to one unit in the
// last place (the float32 value it rounds differs from float64's by ~1e-7), or to the smallest
// normal float32 for values below it (the kernel's exponential flushes those to 0), or at the
// label to 2.4e-7 (p_y - 1 cancels in float32 when p_y is near 1).
TEST(XentKernel, LossAndGradientMatchFloat64LogSoftmaxInEveryVariant) {
  const auto variants = xent_variants();
  ASSERT_FALSE(variants.empty());
  for (const int64_t V : {1, 2, 15, 16, 17, 61, 1000, 32000, 32003}) {
    for (const double spread : {0.01, 3.0, 80.0}) {
      SCOPED_TRACE("V " + std::to_string(V) + " spread " + std::to_string(spread));
      const int64_t rows = 7;
      torch::manual_seed(V);
      auto logits = (torch::randn({rows, V}) * spread).to(torch::kFloat32);
      auto y = torch::randint(0, V, {rows}, torch::kInt64);
      y[0] = 0;
      y[rows - 1] = V - 1;
      for (const bool bf16 : {false, true}) {
        const auto in = bf16 ? logits.to(torch::kBFloat16) : logits;
        const auto x64 = in.to(torch::kFloat64);
        const auto logp = torch::log_softmax(x64, 1);
        const auto want_loss = -logp.gather(1, y.unsqueeze(1)).squeeze(1);
        const auto want_grad = logp.exp().scatter_add(1, y.unsqueeze(1), -torch::ones({rows, 1}, torch::kFloat64));
        std::vector<torch::Tensor> results;
        for (const auto& v : variants) {
          SCOPED_TRACE(std::string(v.name) + (bf16 ? " bf16" : " f32"));
          auto x = in.clone();
          std::vector<float> loss(rows);
          if (bf16)
            v.bf16(reinterpret_cast<uint16_t*>(x.data_ptr<at::BFloat16>()), V, y.data_ptr<int64_t>(), 0, rows, loss.data());
          else
            v.f32(x.data_ptr<float>(), V, y.data_ptr<int64_t>(), 0, rows, loss.data());
          for (int64_t r = 0; r < rows; ++r) {
            const double w = want_loss[r].item<double>();
            EXPECT_NEAR(loss[r], w, 2e-7 * std::max(1.0, std::abs(w))) << "row " << r;
          }
          const auto g = x.to(torch::kFloat64);
          if (bf16) {
            // one bf16 unit in the last place of the wanted value, 2^(exponent - 7), at least the
            // smallest normal float32; at the label, where p_y - 1 cancels in float32 (as in
            // libtorch's float32 path), at least 2 float32 units of 1 (2.4e-7)
            auto tol = torch::pow(2.0, torch::floor(torch::log2(want_grad.abs().clamp_min(1e-30))) - 7)
                           .clamp_min(std::numeric_limits<float>::min());
            tol.scatter_(1, y.unsqueeze(1), tol.gather(1, y.unsqueeze(1)).clamp_min(2.4e-7));
            const auto units = (g - want_grad).abs() / tol;
            const auto at = units.argmax();
            EXPECT_LE(units.max().item<double>(), 1.0) << "at " << at.item<int64_t>() << ": "
                                                       << g.flatten()[at].item<double>() << " for "
                                                       << want_grad.flatten()[at].item<double>();
          } else {
            EXPECT_LT((g - want_grad).abs().max().item<double>(), 2e-7);
          }
          results.push_back(x);
        }
        for (size_t i = 1; i < results.size(); ++i)  // bit for bit the same in every variant
          EXPECT_TRUE(torch::equal(results[i], results[0])) << variants[i].name << " differs from " << variants[0].name;
      }
    }
  }
}

// The exponential over its range, against the C library's in double: within 2 float32 units in
// the last place (relative 2.4e-7); below -87.3 it gives 0 (under the smallest normal float32),
// and NaN stays NaN, so that a NaN logit makes the loss NaN.
TEST(XentKernel, ExponentialIsAccurateAndKeepsNaN) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(xent_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 2.4e-7);
  EXPECT_EQ(xent_exp(-87.4f), 0.0f);
  EXPECT_EQ(xent_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_GT(xent_exp(-87.2f), std::numeric_limits<float>::min());
  EXPECT_TRUE(std::isnan(xent_exp(std::numeric_limits<float>::quiet_NaN())));
  for (const auto& v : xent_variants()) {
    std::vector<float> x = {0.5f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
    const int64_t y = 0;
    float loss = 0;
    v.f32(x.data(), 3, &y, 0, 1, &loss);
    EXPECT_TRUE(std::isnan(loss)) << v.name;
  }
}

// Labels outside the vocabulary are refused, not read out of bounds.
TEST(XentKernel, LabelOutsideTheVocabularyIsAnError) {
  auto m = model_for(false);
  LoraOptions o;
  o.r = 2;
  o.target_modules = {"q_proj"};
  apply_lora(m, o);
  auto seqs = sequences();
  seqs[1].labels[7] = 61;  // the vocabulary is 0 .. 60
  SequenceBatch b;
  for (const auto& s : seqs) b.rows.push_back(&s);
  EXPECT_THROW(batch_loss_sum(m, b), std::out_of_range);
}
