// The chunked cross-entropy (src/train/loss.h): the same loss and gradients as cross-entropy over
// the whole [batch, length, vocab] logits, whatever the chunk size, for LoRA (the output layer
// adapted too) and full fine-tuning, with dropout replayed identically in the recomputation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/llama.h"
#include "model/lora.h"
#include "src/train/loss.h"
#include "src/train/packing.h"

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
