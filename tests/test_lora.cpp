// LoRA (model/lora.h, LinearImpl's adapter): identity at initialisation, merge/unmerge agreement,
// adapter gradients against the chain rule through a merged weight, PEFT scaling (plain and
// rsLoRA), target selection and parameter names, freezing, modules_to_save, option errors,
// dropout in train/eval mode, seeded initialisation, float32 adapters on a bf16 base. Uses the
// stories260k fixture model and small random configurations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "model/llama.h"
#include "model/lora.h"
#include "src/io/adapter_io.h"
#include "src/io/export.h"
#include "src/io/hf_model.h"
#include "src/io/safetensors.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

LlamaConfig tiny_config(bool tied = false, bool qkv_bias = false) {
  LlamaConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  c.attention_bias = qkv_bias;
  if (qkv_bias) c.model_type = "qwen2";
  return c;
}

LlamaForCausalLM tiny_model(uint64_t seed, bool tied = false, bool qkv_bias = false) {
  LlamaForCausalLM m(tiny_config(tied, qkv_bias));
  m->init_weights(seed, 0.1);
  if (qkv_bias) {  // init_weights zeroes biases; make them matter
    torch::NoGradGuard ng;
    for (auto& p : m->named_parameters()) {
      if (p.key().find("bias") != std::string::npos) p.value().normal_(0.0, 0.1);
    }
  }
  return m;
}

LlamaForCausalLM stories_model(const std::string& dtype = "float32") {
  return load_hf_model(stories_dir(), dtype);
}

LoraOptions options(std::vector<std::string> targets, int64_t r = 4, double alpha = 8.0) {
  LoraOptions o;
  o.r = r;
  o.lora_alpha = alpha;
  o.lora_dropout = 0.0;
  o.target_modules = std::move(targets);
  o.seed = 7;
  return o;
}

torch::Tensor random_tokens(int64_t vocab, int64_t b, int64_t t, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, vocab, {b, t}, torch::kInt64);
}

LinearImpl& linear_at(LlamaForCausalLM& model, const std::string& name) {
  auto modules = model->named_modules();
  auto* lin = modules[name]->as<LinearImpl>();
  if (!lin) throw std::runtime_error(name + " is not a Linear");
  return *lin;
}

// Training-like adapters: B (and A, which init already set) drawn at random.
void randomize_b(LlamaForCausalLM& model, const std::vector<std::string>& names, uint64_t seed,
                 double std = 0.05) {
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  for (const auto& n : names) linear_at(model, n).lora_B->weight.normal_(0.0, std);
}

double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  return (g - w).norm().item<double>() / w.norm().item<double>();
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no std::invalid_argument thrown>";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Identity at initialisation

TEST(Lora, ZeroBGivesBaseOutputExactly) {
  auto tokens = random_tokens(512, 2, 16, 1);
  for (const std::string init : {"true", "gaussian"}) {
    auto model = stories_model();
    model->eval();
    torch::NoGradGuard ng;
    auto before = model->forward(tokens);
    auto o = options({"all-linear"});
    o.init_lora_weights = init;
    o.lora_dropout = 0.1;
    auto names = apply_lora(model, o);
    ASSERT_EQ(names.size(), 35u);
    auto& q = linear_at(model, names[0]);
    EXPECT_GT(q.lora_A->weight.abs().sum().item<double>(), 0.0) << init;  // A is initialised
    EXPECT_EQ(q.lora_B->weight.abs().sum().item<double>(), 0.0) << init;
    EXPECT_TRUE(torch::equal(model->forward(tokens), before)) << init;
    model->train();  // dropout on the adapter input cannot matter while B = 0
    EXPECT_TRUE(torch::equal(model->forward(tokens), before)) << init;
  }
  // A random untied config with q/k/v biases (qwen2-like).
  auto model = tiny_model(3, /*tied=*/false, /*qkv_bias=*/true);
  auto tok = random_tokens(61, 3, 10, 2);
  torch::NoGradGuard ng;
  auto before = model->forward(tok);
  apply_lora(model, options({"all-linear"}, 8, 16.0));
  EXPECT_TRUE(torch::equal(model->forward(tok), before));
}

// ---------------------------------------------------------------------------------------------
// Merge / unmerge

// Each case runs in float64 (model and adapters converted after apply_lora), where the 1e-5 bound
// tests the algebra, and in float32, where rounding through the stories model's 5 layers (logits
// up to ~15) alone reaches ~3e-5, so the bound there is 1e-4.
TEST(Lora, MergedAndUnmergedOutputsAgree) {
  struct Case {
    std::string what;
    std::function<LlamaForCausalLM()> make;
    int64_t vocab;
  };
  std::vector<Case> cases{{"stories260k", [] { return stories_model(); }, 512},
                          {"tiny untied + bias", [] { return tiny_model(11, false, true); }, 61},
                          {"tiny tied, rslora", [] { return tiny_model(12, true, false); }, 61}};
  for (const auto& c : cases) {
    for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
      const double tol = dtype == torch::kFloat64 ? 1e-5 : 1e-4;
      auto model = c.make();
      model->eval();
      torch::NoGradGuard ng;
      auto tokens = random_tokens(c.vocab, 2, 12, 3);
      auto o = options({"all-linear"}, 4, 8.0);
      o.use_rslora = c.what == "tiny tied, rslora";
      auto names = apply_lora(model, o);
      randomize_b(model, names, 5);
      model->to(dtype);
      auto& q = linear_at(model, names[0]);
      ASSERT_EQ(q.lora_A->weight.scalar_type(), dtype);
      auto base = [&] {  // the same model with every adapter's B set to zero
        std::vector<torch::Tensor> saved;
        for (const auto& n : names) saved.push_back(linear_at(model, n).lora_B->weight.clone());
        for (const auto& n : names) linear_at(model, n).lora_B->weight.zero_();
        auto out = model->forward(tokens);
        for (size_t i = 0; i < names.size(); ++i)
          linear_at(model, names[i]).lora_B->weight.copy_(saved[i]);
        return out;
      }();
      const std::string what = c.what + (dtype == torch::kFloat64 ? " float64" : " float32");
      auto w0 = q.weight.clone();
      auto unmerged = model->forward(tokens);
      EXPECT_GT(max_abs(unmerged, base), 1e-2) << what << ": the adapters must change the output";

      EXPECT_EQ(merge_lora(model), static_cast<int64_t>(names.size()));
      EXPECT_TRUE(q.merged());
      auto expected_w = w0 + lora_scale(o) * torch::matmul(q.lora_B->weight, q.lora_A->weight);
      EXPECT_LT(max_abs(q.weight, expected_w), 1e-6) << what;
      auto merged = model->forward(tokens);
      const double diff = max_abs(merged, unmerged);
      EXPECT_LT(diff, tol) << what;
      std::cout << "[ merged vs unmerged ] " << what << ": max |diff| = " << diff
                << " (max |logit| = " << unmerged.abs().max().item<double>()
                << ", max |adapter effect| = " << max_abs(unmerged, base) << ")\n";
      merge_lora(model);  // merging twice is a no-op, as PEFT
      EXPECT_TRUE(torch::equal(model->forward(tokens), merged)) << what;

      EXPECT_EQ(unmerge_lora(model), static_cast<int64_t>(names.size()));
      EXPECT_FALSE(q.merged());
      EXPECT_LT(max_abs(q.weight, w0), 1e-6) << what;
      EXPECT_LT(max_abs(model->forward(tokens), unmerged), tol) << what;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gradients: with W = W0 + s B A, dL/dB = s dL/dW A^T and dL/dA = s B^T dL/dW.

// As above, float64 with the 1e-5 bound, and float32 where the two passes' different rounding
// alone gives relative errors of ~1.5e-5 on the stories model, so the bound there is 1e-4.
TEST(Lora, GradientsMatchChainRuleThroughMergedWeight) {
  struct Case {
    std::string what;
    std::function<LlamaForCausalLM()> make;
    int64_t vocab;
    bool rslora;
  };
  std::vector<Case> cases{
      {"stories260k", [] { return stories_model(); }, 512, false},
      {"tiny untied + bias, rslora", [] { return tiny_model(21, false, true); }, 61, true}};
  for (const auto& c : cases) {
    for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
      const double tol = dtype == torch::kFloat64 ? 1e-5 : 1e-4;
      const std::string what = c.what + (dtype == torch::kFloat64 ? " float64" : " float32");
      auto model = c.make();
      auto tokens = random_tokens(c.vocab, 2, 16, 4);
      auto o = options({"all-linear"}, 4, 16.0);
      o.use_rslora = c.rslora;
      o.init_lora_weights = "gaussian";
      const double s = lora_scale(o);
      auto names = apply_lora(model, o);
      randomize_b(model, names, 6);
      model->to(dtype);

      // Pass 1: the adapters' own gradients.
      next_token_loss(model->forward(tokens), tokens).backward();
      std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> lora_grads;  // (dA, dB)
      for (const auto& n : names) {
        auto& lin = linear_at(model, n);
        ASSERT_TRUE(lin.lora_A->weight.grad().defined()) << n;
        lora_grads[n] = {lin.lora_A->weight.grad().clone(), lin.lora_B->weight.grad().clone()};
      }

      // Pass 2: full gradients of the merged weights (the adapters take no part in this pass).
      merge_lora(model);
      for (const auto& n : names) linear_at(model, n).weight.set_requires_grad(true);
      next_token_loss(model->forward(tokens), tokens).backward();

      double worst_a = 0, worst_b = 0;
      for (const auto& n : names) {
        auto& lin = linear_at(model, n);
        auto dw = lin.weight.grad();
        ASSERT_TRUE(dw.defined()) << n;
        const auto& a = lin.lora_A->weight;
        const auto& b = lin.lora_B->weight;
        auto want_db = s * torch::matmul(dw, a.t());
        auto want_da = s * torch::matmul(b.t(), dw);
        ASSERT_GT(want_db.norm().item<double>(), 0.0) << n;
        const double ea = rel_err(lora_grads[n].first, want_da);
        const double eb = rel_err(lora_grads[n].second, want_db);
        EXPECT_LT(ea, tol) << what << " " << n << " dL/dA";
        EXPECT_LT(eb, tol) << what << " " << n << " dL/dB";
        worst_a = std::max(worst_a, ea);
        worst_b = std::max(worst_b, eb);
      }
      std::cout << "[ gradients ] " << what << ": " << names.size()
                << " layers, max relative error dL/dA " << worst_a << ", dL/dB " << worst_b << "\n";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scaling

TEST(Lora, ScaleIsAlphaOverRankOrOverSqrtRank) {
  auto plain = options({"q_proj"}, 4, 8.0);
  auto rs = plain;
  rs.use_rslora = true;
  EXPECT_DOUBLE_EQ(lora_scale(plain), 2.0);  // 8 / 4
  EXPECT_DOUBLE_EQ(lora_scale(rs), 4.0);     // 8 / sqrt(4)
  auto big = options({"q_proj"}, 16, 32.0);
  EXPECT_DOUBLE_EQ(lora_scale(big), 2.0);
  big.use_rslora = true;
  EXPECT_DOUBLE_EQ(lora_scale(big), 8.0);

  // On the output: the adapted layer's output minus the base output is scale * x A^T B^T.
  torch::manual_seed(0);
  auto x = torch::randn({2, 5, 32});
  std::map<double, torch::Tensor> diffs;
  for (auto [o, expected_scale] : {std::pair{plain, 2.0}, std::pair{rs, 4.0}}) {
    auto model = tiny_model(31);
    o.init_lora_weights = "false";  // B random too, identical for both (same seed)
    auto names = apply_lora(model, o);
    ASSERT_EQ(names.size(), 2u);
    auto& q = linear_at(model, names[0]);
    torch::NoGradGuard ng;
    auto base = torch::nn::functional::linear(x, q.weight, q.bias);
    auto diff = q.forward(x) - base;
    auto branch = torch::matmul(torch::matmul(x, q.lora_A->weight.t()), q.lora_B->weight.t());
    EXPECT_GT(branch.abs().max().item<double>(), 1e-2);
    EXPECT_LT(max_abs(diff, expected_scale * branch), 1e-5) << "scale " << expected_scale;
    diffs[expected_scale] = diff;
  }
  EXPECT_LT(max_abs(diffs[4.0], 2.0 * diffs[2.0]), 1e-5);  // rsLoRA doubles the update at r = 4
}

// ---------------------------------------------------------------------------------------------
// Target selection and names

TEST(Lora, TargetModulesSelectLayersWithPeftNames) {
  {
    auto model = tiny_model(41);
    auto names = apply_lora(model, options({"q_proj", "v_proj"}));
    std::vector<std::string> want{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                  "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"};
    EXPECT_EQ(names, want);
    auto params = model->named_parameters();
    EXPECT_TRUE(params.contains("model.layers.0.self_attn.q_proj.lora_A.weight"));
    EXPECT_TRUE(params.contains("model.layers.1.self_attn.v_proj.lora_B.weight"));
    EXPECT_FALSE(params.contains("model.layers.0.self_attn.k_proj.lora_A.weight"));
    EXPECT_TRUE(params.contains("model.layers.0.self_attn.q_proj.weight"));  // base name unchanged
  }
  {
    auto model = tiny_model(42);  // untied: lm_head is a Linear, and still never adapted
    const int64_t r = 4;
    auto names = apply_lora(model, options({"all-linear"}, r));
    ASSERT_EQ(names.size(), 14u);
    const std::vector<std::string> per_layer{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                             "mlp.down_proj"};
    std::vector<std::string> want;
    for (int l = 0; l < 2; ++l) {
      for (const auto& p : per_layer) want.push_back("model.layers." + std::to_string(l) + "." + p);
    }
    EXPECT_EQ(names, want);
    auto params = model->named_parameters();
    EXPECT_FALSE(params.contains("lm_head.lora_A.weight"));
    EXPECT_FALSE(linear_at(model, "lm_head").has_lora());
    int64_t lora_numel = 0, trainable = 0;
    for (const auto& n : names) {
      auto& lin = linear_at(model, n);
      auto a = params[n + ".lora_A.weight"], b = params[n + ".lora_B.weight"];
      EXPECT_EQ(a.sizes(), (std::vector<int64_t>{r, lin.in_features()})) << n;
      EXPECT_EQ(b.sizes(), (std::vector<int64_t>{lin.out_features(), r})) << n;
      lora_numel += a.numel() + b.numel();
    }
    for (const auto& p : params) {
      if (p.value().requires_grad()) {
        trainable += p.value().numel();
        EXPECT_NE(p.key().find(".lora_"), std::string::npos) << p.key();
      }
    }
    EXPECT_EQ(trainable, lora_numel);
    // per layer: r * (in + out) for q(32,32) k(32,16) v(32,16) o(32,32) gate/up(32,48) down(48,32)
    EXPECT_EQ(lora_numel, 2 * r * (64 + 48 + 48 + 64 + 80 + 80 + 80));
    EXPECT_THROW(apply_lora(model, options({"q_proj"})), std::invalid_argument);  // twice
  }
  {
    auto model = stories_model();  // tied: no lm_head module at all
    auto names = apply_lora(model, options({"all-linear", "q_proj"}));
    EXPECT_EQ(names.size(), 35u);  // 5 layers x 7, q_proj not doubled
  }
}

// ---------------------------------------------------------------------------------------------
// Freezing, modules_to_save

TEST(Lora, FrozenBaseHasNoGradient) {
  auto model = stories_model();
  auto names = apply_lora(model, options({"q_proj", "v_proj", "down_proj"}));
  ASSERT_EQ(names.size(), 15u);
  randomize_b(model, names, 8);
  auto tokens = random_tokens(512, 2, 16, 9);
  next_token_loss(model->forward(tokens), tokens).backward();
  int frozen = 0, trained = 0;
  for (const auto& p : model->named_parameters()) {
    const bool is_lora = p.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), is_lora) << p.key();
    if (is_lora) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
      ++trained;
    } else {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
      ++frozen;
    }
  }
  EXPECT_EQ(trained, 30);
  EXPECT_EQ(frozen, 1 + 5 * 9 + 1);  // embed, 5 x (7 linears + 2 norms), final norm

  // init_weights (for new models) leaves the adapters alone.
  auto zero_b = tiny_model(43);
  auto n2 = apply_lora(zero_b, options({"q_proj"}));
  zero_b->init_weights(44, 0.1);
  EXPECT_EQ(linear_at(zero_b, n2[0]).lora_B->weight.abs().sum().item<double>(), 0.0);
}

TEST(Lora, ModulesToSaveTrainsEmbeddingsInFull) {
  auto trainable_base = [](LlamaForCausalLM& m) {
    std::vector<std::string> out;
    for (const auto& p : m->named_parameters()) {
      if (p.value().requires_grad() && p.key().find(".lora_") == std::string::npos) out.push_back(p.key());
    }
    return out;
  };
  using V = std::vector<std::string>;
  {
    auto model = stories_model();
    auto o = options({"q_proj"});
    o.modules_to_save = {"embed_tokens"};
    apply_lora(model, o);
    EXPECT_EQ(trainable_base(model), V{"model.embed_tokens.weight"});
    auto tokens = random_tokens(512, 2, 16, 10);
    next_token_loss(model->forward(tokens), tokens).backward();
    auto& emb = model->model->embed_tokens->weight;
    ASSERT_TRUE(emb.grad().defined());
    EXPECT_GT(emb.grad().abs().sum().item<double>(), 0.0);
    // Every row is trained through the tied head, not only the rows of the input tokens.
    EXPECT_GT(emb.grad().abs().sum(1).gt(0).sum().item<int64_t>(), 500);
  }
  {
    auto model = stories_model();  // tied: lm_head means the shared embedding matrix
    auto o = options({"q_proj"});
    o.modules_to_save = {"lm_head"};
    apply_lora(model, o);
    EXPECT_EQ(trainable_base(model), V{"model.embed_tokens.weight"});
  }
  {
    auto model = tiny_model(51);  // untied
    auto o = options({"q_proj"});
    o.modules_to_save = {"lm_head"};
    apply_lora(model, o);
    EXPECT_EQ(trainable_base(model), V{"lm_head.weight"});
    auto tokens = random_tokens(61, 2, 8, 11);
    next_token_loss(model->forward(tokens), tokens).backward();
    EXPECT_TRUE(model->lm_head->weight.grad().defined());
    EXPECT_FALSE(model->model->embed_tokens->weight.grad().defined());
  }
  {
    auto model = tiny_model(52, false, true);
    auto o = options({"q_proj"});
    o.modules_to_save = {"embed_tokens", "lm_head"};
    o.bias = "lora_only";
    apply_lora(model, o);
    EXPECT_EQ(trainable_base(model), (V{"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias",
                                        "model.layers.1.self_attn.q_proj.bias", "lm_head.weight"}));
  }
}

// ---------------------------------------------------------------------------------------------
// Bad options

TEST(Lora, UnknownTargetIsRejectedWithItsName) {
  auto model = tiny_model(61);
  auto msg = message_of([&] { apply_lora(model, options({"q_proj", "qproj"})); });
  EXPECT_NE(msg.find("\"qproj\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, lm_head, all-linear"),
            std::string::npos)
      << msg;
  // Nothing was changed: no adapter, nothing frozen.
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.key().find(".lora_"), std::string::npos) << p.key();
    EXPECT_TRUE(p.value().requires_grad()) << p.key();
  }
  auto both = options({"lm_head"});
  both.modules_to_save = {"lm_head"};
  msg = message_of([&] { apply_lora(model, both); });
  EXPECT_NE(msg.find("\"lm_head\" is both a LoRA target (target_modules) and trained in full"), std::string::npos) << msg;

  auto bad = options({"q_proj"});
  bad.r = 0;
  EXPECT_NE(message_of([&] { apply_lora(model, bad); }).find("r = 0"), std::string::npos);
  bad = options({"q_proj"});
  bad.init_lora_weights = "kaiming";
  EXPECT_NE(message_of([&] { apply_lora(model, bad); }).find("\"kaiming\""), std::string::npos);
  bad = options({"q_proj"});
  bad.modules_to_save = {"norm"};
  EXPECT_NE(message_of([&] { apply_lora(model, bad); }).find("\"norm\""), std::string::npos);
  bad = options({"q_proj"});
  bad.lora_dropout = 1.0;
  EXPECT_NE(message_of([&] { apply_lora(model, bad); }).find("lora_dropout"), std::string::npos);
  bad = options({});
  EXPECT_NE(message_of([&] { apply_lora(model, bad); }).find("target_modules is empty"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST(Lora, DropoutActsOnAdapterInputOnlyInTrainMode) {
  auto model = tiny_model(71);
  auto o = options({"q_proj"});
  o.lora_dropout = 0.5;
  auto names = apply_lora(model, o);
  auto& q = linear_at(model, names[0]);
  torch::manual_seed(1);
  auto x = torch::randn({2, 6, 32});
  torch::NoGradGuard ng;
  auto base = torch::nn::functional::linear(x, q.weight, q.bias);

  model->train();  // with B = 0, dropout on the adapter input leaves the base path untouched
  EXPECT_TRUE(torch::equal(q.forward(x), base));

  randomize_b(model, names, 12);
  auto branch = lora_scale(o) * torch::matmul(torch::matmul(x, q.lora_A->weight.t()), q.lora_B->weight.t());
  model->eval();  // propagates to the nested adapter Linear
  auto e1 = q.forward(x), e2 = q.forward(x);
  EXPECT_TRUE(torch::equal(e1, e2));
  EXPECT_LT(max_abs(e1, base + branch), 1e-6);

  model->train();
  auto t1 = q.forward(x), t2 = q.forward(x);
  EXPECT_GT(max_abs(t1, e1), 1e-3);
  EXPECT_GT(max_abs(t1, t2), 1e-3);
  // Dropout on one input feature: zeroing feature j of x removes column j of A's contribution.
  // Check the train-mode output is base + scale * ((m * x / (1 - p)) A^T) B^T for some 0/1 mask m
  // by recovering the mask per row from a one-feature-at-a-time input.
  auto probe = torch::zeros({1, 1, 32});
  probe[0][0][3] = 1.0;
  int kept = 0, dropped = 0;
  for (int i = 0; i < 200; ++i) {
    auto d = q.forward(probe) - torch::nn::functional::linear(probe, q.weight, q.bias);
    auto full = lora_scale(o) * torch::matmul(torch::matmul(probe, q.lora_A->weight.t()),
                                              q.lora_B->weight.t());
    if (d.abs().max().item<double>() == 0.0) {
      ++dropped;
    } else {
      EXPECT_LT(max_abs(d, 2.0 * full), 1e-5);  // kept inputs are scaled by 1 / (1 - p)
      ++kept;
    }
  }
  EXPECT_GT(kept, 60);
  EXPECT_GT(dropped, 60);

  // Model level: eval is deterministic, train is not.
  auto tokens = random_tokens(61, 2, 8, 13);
  model->eval();
  EXPECT_TRUE(torch::equal(model->forward(tokens), model->forward(tokens)));
  model->train();
  EXPECT_FALSE(torch::equal(model->forward(tokens), model->forward(tokens)));
}

// ---------------------------------------------------------------------------------------------
// Initialisation

TEST(Lora, InitialisationIsSeededAndFollowsPeft) {
  auto adapters = [](const std::string& init, uint64_t seed) {
    auto model = tiny_model(81);
    auto o = options({"gate_proj", "down_proj"}, 8);
    o.init_lora_weights = init;
    o.seed = seed;
    auto names = apply_lora(model, o);
    std::vector<torch::Tensor> ab;
    for (const auto& n : names) {
      auto& lin = linear_at(model, n);
      ab.push_back(lin.lora_A->weight.detach().clone());
      ab.push_back(lin.lora_B->weight.detach().clone());
    }
    return ab;  // gate0 A, gate0 B, down0 A, down0 B, ...
  };
  auto a1 = adapters("true", 1), a1b = adapters("true", 1), a2 = adapters("true", 2);
  for (size_t i = 0; i < a1.size(); ++i) EXPECT_TRUE(torch::equal(a1[i], a1b[i])) << i;
  EXPECT_FALSE(torch::equal(a1[0], a2[0]));
  EXPECT_FALSE(torch::equal(a1[0], a1[4]));  // layers draw different values
  // "true": A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_, a = sqrt(5)), B = 0.
  for (auto [ai, in] : {std::pair{0, 32}, std::pair{2, 48}}) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    EXPECT_EQ(a1[ai].scalar_type(), torch::kFloat32);
    EXPECT_LE(a1[ai].abs().max().item<double>(), bound);
    EXPECT_GT(a1[ai].abs().max().item<double>(), 0.9 * bound);
    EXPECT_NEAR(a1[ai].std().item<double>(), bound / std::sqrt(3.0), 0.1 * bound);
    EXPECT_EQ(a1[ai + 1].abs().max().item<double>(), 0.0);
  }
  // "gaussian": A ~ N(0, 1/r), B = 0.
  auto g = adapters("gaussian", 1);
  auto all_a = torch::cat({g[0].flatten(), g[2].flatten(), g[4].flatten(), g[6].flatten()});
  EXPECT_NEAR(all_a.std().item<double>(), 1.0 / 8.0, 0.01);
  EXPECT_NEAR(all_a.mean().item<double>(), 0.0, 0.01);
  EXPECT_EQ(g[1].abs().max().item<double>(), 0.0);
  // "false": B gets nn.Linear's default too (bound 1/sqrt(r)), so the model changes at once.
  auto f = adapters("false", 1);
  EXPECT_GT(f[1].abs().max().item<double>(), 0.9 / std::sqrt(8.0));
  EXPECT_LE(f[1].abs().max().item<double>(), 1.0 / std::sqrt(8.0));
}

// ---------------------------------------------------------------------------------------------
// bf16 base

TEST(Lora, Bfloat16BaseKeepsFloat32Adapters) {
  auto model = stories_model("bfloat16");
  model->eval();
  auto tokens = random_tokens(512, 1, 12, 14);
  torch::NoGradGuard ng;
  auto before = model->forward(tokens);
  auto names = apply_lora(model, options({"all-linear"}));
  auto& q = linear_at(model, names[0]);
  EXPECT_EQ(q.weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(q.lora_A->weight.scalar_type(), torch::kFloat32);
  EXPECT_EQ(q.lora_B->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(model->forward(tokens), before));

  randomize_b(model, names, 15);
  torch::manual_seed(2);
  auto x = torch::randn({2, 3, 64}).to(torch::kBFloat16);
  auto y = q.forward(x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  // x A^T in float32 (as PEFT), rounded to bf16; its product with B in bf16 (as torch.autocast)
  // accumulated in float32 with the bf16 base output and rounded once. Written out in float32
  // from the bf16-rounded operands, it may differ from the fused product by one rounding.
  namespace F = torch::nn::functional;
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
  const auto a = F::linear(f32(x), q.lora_A->weight).to(torch::kBFloat16);  // [.., r] bf16
  auto want = (f32(F::linear(x, q.weight, q.bias)) +
               F::linear(f32(a), f32(q.lora_B->weight.to(torch::kBFloat16))) * q.lora_scale)
                  .to(torch::kBFloat16);
  const double ulp = 1.0 / 128;  // bf16: 8 significant bits
  EXPECT_LE(((f32(y) - f32(want)).abs() / f32(want).abs().clamp_min(1e-3)).max().item<double>(), ulp);
  EXPECT_GT((f32(y) - f32(F::linear(x, q.weight, q.bias))).abs().max().item<double>(), 0.0);  // the branch is there

  auto w0 = q.weight.clone();
  auto unmerged = model->forward(tokens);
  merge_lora(model);
  // Merged in float32 and rounded to bf16 once.
  auto delta = q.lora_scale * torch::matmul(q.lora_B->weight, q.lora_A->weight);
  EXPECT_TRUE(torch::equal(q.weight, (w0.to(torch::kFloat32) + delta).to(torch::kBFloat16)));
  auto merged = model->forward(tokens);
  const double merge_err = rel_err(merged, unmerged), effect = rel_err(unmerged, before);
  std::cout << "[ bf16 ] relative error merged vs unmerged " << merge_err
            << " (adapter effect on the logits " << effect << ")\n";
  EXPECT_LT(merge_err, 5e-2);  // the bf16 rounding of the merged weights
  EXPECT_LT(merge_err, 0.1 * effect);
  unmerge_lora(model);
  EXPECT_LT(max_abs(q.weight, w0), 1e-2);  // within a bf16 ulp of |w| < 2
}

// ---------------------------------------------------------------------------------------------
// Gradient checkpointing

namespace {

// Loss and gradients of every trainable parameter after one backward pass, with packed segments
// and (in train mode) LoRA dropout drawing from the generator seeded with `seed`.
std::pair<double, std::map<std::string, torch::Tensor>> grads_of(LlamaForCausalLM& model, bool checkpointing,
                                                                  uint64_t seed) {
  model->gradient_checkpointing = checkpointing;
  model->train();
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  auto tokens = random_tokens(61, 2, 12, 5);
  auto seg = torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}).view({2, 12});
  torch::manual_seed(seed);
  auto loss = next_token_loss(model->forward(tokens, {}, AttentionMask{seg}), tokens);
  loss.backward();
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad()) g[p.key()] = p.value().grad().clone();
  return {loss.item<double>(), g};
}

}  // namespace

TEST(GradientCheckpointing, FullFineTuningGradientsUnchanged) {
  auto model = tiny_model(81);
  auto [l0, g0] = grads_of(model, false, 3);
  auto [l1, g1] = grads_of(model, true, 3);
  EXPECT_EQ(l0, l1);
  ASSERT_EQ(g0.size(), g1.size());
  ASSERT_EQ(g0.size(), model->parameters().size());
  for (const auto& [name, g] : g0) {
    ASSERT_TRUE(g1[name].defined()) << name;
    EXPECT_LT(rel_err(g1[name], g), 1e-6) << name;
  }
}

TEST(GradientCheckpointing, LoraWithDropoutReplaysTheSameMasks) {
  auto model = tiny_model(82);
  auto o = options({"all-linear"});
  o.lora_dropout = 0.3;
  auto names = apply_lora(model, o);
  randomize_b(model, names, 4);
  auto [l0, g0] = grads_of(model, false, 9);
  auto [l1, g1] = grads_of(model, true, 9);
  EXPECT_EQ(l0, l1);
  ASSERT_EQ(g0.size(), 2 * names.size());
  for (const auto& [name, g] : g0) {
    ASSERT_TRUE(g1[name].defined()) << name;
    EXPECT_GT(g.abs().sum().item<double>(), 0) << name;
    EXPECT_LT(rel_err(g1[name], g), 1e-6) << name;
  }
  // The generator is left where an uncheckpointed pass leaves it: later draws are unaffected.
  grads_of(model, false, 9);
  auto after_plain = torch::rand({4});
  grads_of(model, true, 9);
  auto after_ckpt = torch::rand({4});
  EXPECT_TRUE(torch::equal(after_ckpt, after_plain));
}

// ---------------------------------------------------------------------------------------------
// PEFT export of a trained lm_head with tied embeddings

TEST(Lora, TiedLmHeadInModulesToSaveIsExportedAndReloaded) {
  TempDir dir("ringtune-tied");
  auto trained = tiny_model(91, /*tied=*/true);
  auto o = options({"q_proj"});
  o.modules_to_save = {"lm_head"};
  apply_lora(trained, o);
  {
    torch::NoGradGuard ng;
    trained->model->embed_tokens->weight.add_(0.5);
  }
  write_peft_adapter(dir.file("adapter"), trained, o, "tiny");
  SafeTensorsFile f(dir.file("adapter/adapter_model.safetensors"));
  ASSERT_TRUE(f.contains("base_model.model.lm_head.weight"));
  auto fresh = tiny_model(91, /*tied=*/true);
  load_adapter(fresh, dir.file("adapter"));
  EXPECT_TRUE(torch::equal(fresh->model->embed_tokens->weight, trained->model->embed_tokens->weight));
}

// ---------------------------------------------------------------------------------------------
// LoRA on embed_tokens and lm_head (PEFT's lora.Embedding and lora.Linear on the output layer)

namespace {

// Training-like values for every adapter factor of the embedding and the output layer.
void randomize_embedding_and_head(LlamaForCausalLM& m, uint64_t seed) {
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  m->model->embed_lora_A.normal_(0.0, 0.3);
  m->model->embed_lora_B.normal_(0.0, 0.3);
  if (m->lm_head && m->lm_head->has_lora()) m->lm_head->lora_B->weight.normal_(0.0, 0.05);
  if (m->tied_head_lora) m->tied_head_lora->lora_B->weight.normal_(0.0, 0.05);
}

}  // namespace

TEST(LoraEmbedding, InitialAdaptersLeaveLogitsUnchanged) {
  for (const bool tied : {false, true}) {
    auto base = tiny_model(31, tied);
    auto m = tiny_model(31, tied);
    const auto adapted = apply_lora(m, options({"q_proj", "embed_tokens", "lm_head"}));
    EXPECT_EQ(adapted.front(), "model.embed_tokens") << tied;
    EXPECT_EQ(adapted.back(), "lm_head") << tied;
    // PEFT: embedding A zero, B ~ N(0, 1); output layer as any Linear (B zero).
    EXPECT_EQ(m->model->embed_lora_A.abs().max().item<float>(), 0.0f);
    EXPECT_GT(m->model->embed_lora_B.std().item<float>(), 0.5f);
    const auto tokens = random_tokens(61, 2, 9, 4);
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(m->forward(tokens), base->forward(tokens))) << "tied " << tied;
    auto names = m->named_parameters();
    EXPECT_TRUE(names.contains("model.embed_tokens.lora_embedding_A"));
    EXPECT_EQ(names["model.embed_tokens.lora_embedding_A"].sizes().vec(), (std::vector<int64_t>{4, 61}));
    EXPECT_EQ(names["model.embed_tokens.lora_embedding_B"].sizes().vec(), (std::vector<int64_t>{32, 4}));
    EXPECT_EQ(names["lm_head.lora_A.weight"].sizes().vec(), (std::vector<int64_t>{4, 32}));
    EXPECT_EQ(names["lm_head.lora_B.weight"].sizes().vec(), (std::vector<int64_t>{61, 4}));
    for (const auto& p : names)  // only adapters train
      EXPECT_EQ(p.value().requires_grad(), p.key().find(".lora_") != std::string::npos) << p.key();
  }
}

TEST(LoraEmbedding, AdapterGradientsFollowFromTheFullEmbeddingGradient) {
  // E_eff = E + s (B A)^T, so with G = dL/dE: dL/dA = s B^T G^T and dL/dB = s G^T A^T.
  auto m = tiny_model(32);
  auto o = options({"embed_tokens"}, 4, 12.0);
  apply_lora(m, o);
  randomize_embedding_and_head(m, 5);
  auto& E = m->model->embed_tokens->weight;
  E.set_requires_grad(true);
  const auto tokens = random_tokens(61, 2, 12, 6);
  const auto loss = next_token_loss(m->forward(tokens), tokens);
  loss.backward();
  const double s = lora_scale(o);
  const auto G = E.grad().to(torch::kFloat64);
  const auto A = m->model->embed_lora_A.detach().to(torch::kFloat64), B = m->model->embed_lora_B.detach().to(torch::kFloat64);
  EXPECT_LT(rel_err(m->model->embed_lora_A.grad(), s * B.t().matmul(G.t())), 1e-5);
  EXPECT_LT(rel_err(m->model->embed_lora_B.grad(), s * G.t().matmul(A.t())), 1e-5);
  // And against central finite differences of the loss in float64 for a few entries of A and B.
  auto m64 = tiny_model(32);
  apply_lora(m64, o);
  m64->to(torch::kFloat64);
  {
    torch::NoGradGuard ng;
    m64->model->embed_lora_A.copy_(m->model->embed_lora_A);
    m64->model->embed_lora_B.copy_(m->model->embed_lora_B);
  }
  auto loss_of = [&] {
    torch::NoGradGuard ng;
    return next_token_loss(m64->forward(tokens), tokens).item<double>();
  };
  const double h = 1e-2;  // norms and logits are float32 even in a float64 model: no smaller step
  for (auto* t : {&m64->model->embed_lora_A, &m64->model->embed_lora_B}) {
    const bool is_a = t == &m64->model->embed_lora_A;
    const auto& grad = is_a ? m->model->embed_lora_A.grad() : m->model->embed_lora_B.grad();
    // An entry whose token occurs (A's columns are per token): the token at position 0.
    const int64_t col = is_a ? tokens[0][0].item<int64_t>() : 3;
    for (int64_t row : {0, 2}) {
      torch::NoGradGuard ng;
      auto v = t->index({row, col});
      const double x = v.item<double>();
      v.fill_(x + h);
      const double up = loss_of();
      v.fill_(x - h);
      const double down = loss_of();
      v.fill_(x);
      const double fd = (up - down) / (2 * h), got = grad.index({row, col}).item<double>();
      EXPECT_NEAR(got, fd, 2e-5 + 1e-2 * std::abs(fd)) << (is_a ? "A" : "B") << "[" << row << "," << col << "]";
      EXPECT_GT(std::abs(fd), 1e-4) << "a vacuous check";
    }
  }
}

TEST(LoraEmbedding, TiedOutputAdapterEqualsTheUntiedOne) {
  // On a tied model lm_head's adapter acts on the logits only, as PEFT's lora.Linear on lm_head:
  // the same as on an untied copy whose lm_head holds the embedding matrix.
  auto tied = tiny_model(33, true);
  LlamaForCausalLM untied(tiny_config(false));
  {
    torch::NoGradGuard ng;
    auto src = tied->named_parameters();
    for (auto& p : untied->named_parameters())
      p.value().copy_(p.key() == "lm_head.weight" ? src["model.embed_tokens.weight"] : src[p.key()]);
  }
  const auto o = options({"embed_tokens", "lm_head"});
  apply_lora(tied, o);
  apply_lora(untied, o);
  randomize_embedding_and_head(tied, 8);
  {
    torch::NoGradGuard ng;
    untied->model->embed_lora_A.copy_(tied->model->embed_lora_A);
    untied->model->embed_lora_B.copy_(tied->model->embed_lora_B);
    untied->lm_head->lora_A->weight.copy_(tied->tied_head_lora->lora_A->weight);
    untied->lm_head->lora_B->weight.copy_(tied->tied_head_lora->lora_B->weight);
  }
  const auto tokens = random_tokens(61, 2, 10, 9);
  const auto lt = next_token_loss(tied->forward(tokens), tokens), lu = next_token_loss(untied->forward(tokens), tokens);
  EXPECT_NEAR(lt.item<double>(), lu.item<double>(), 1e-6);
  lt.backward();
  lu.backward();
  EXPECT_LT(rel_err(tied->tied_head_lora->lora_B->weight.grad(), untied->lm_head->lora_B->weight.grad()), 1e-5);
  EXPECT_LT(rel_err(tied->tied_head_lora->lora_A->weight.grad(), untied->lm_head->lora_A->weight.grad()), 1e-5);
  EXPECT_LT(rel_err(tied->model->embed_lora_A.grad(), untied->model->embed_lora_A.grad()), 1e-5);
  // Merging into the shared matrix would change both ends: refused.
  EXPECT_NE(message_of([&] { merge_lora(tied); }).find("ties lm_head to embed_tokens"), std::string::npos);
}

TEST(LoraEmbedding, MergedAndUnmergedLogitsAgree) {
  auto m = tiny_model(34);
  apply_lora(m, options({"q_proj", "embed_tokens", "lm_head"}));
  randomize_embedding_and_head(m, 10);
  const auto tokens = random_tokens(61, 2, 11, 12);
  torch::NoGradGuard ng;
  const auto before = m->forward(tokens);
  const auto base_embed = m->model->embed_tokens->weight.clone();
  EXPECT_EQ(merge_lora(m), 4);  // the embedding, q_proj of 2 layers, lm_head
  const auto merged = m->forward(tokens);
  EXPECT_LT(max_abs(merged, before), 1e-4);
  EXPECT_GT(max_abs(m->model->embed_tokens->weight, base_embed), 1e-3);  // folded in
  EXPECT_EQ(unmerge_lora(m), 4);
  EXPECT_LT(max_abs(m->model->embed_tokens->weight, base_embed), 1e-6);
  EXPECT_LT(max_abs(m->forward(tokens), before), 1e-5);
}

TEST(LoraEmbedding, PeftNamesExportAndReload) {
  for (const bool tied : {false, true}) {
    TempDir dir("ringtune-embed-lora");
    auto m = tiny_model(35, tied);
    const auto o = options({"v_proj", "embed_tokens", "lm_head"});
    apply_lora(m, o);
    randomize_embedding_and_head(m, 13);
    write_peft_adapter(dir.file("adapter"), m, o, "tiny");
    SafeTensorsFile f(dir.file("adapter/adapter_model.safetensors"));
    EXPECT_EQ(f.info("base_model.model.model.embed_tokens.lora_embedding_A").shape, (std::vector<int64_t>{4, 61}));
    EXPECT_EQ(f.info("base_model.model.model.embed_tokens.lora_embedding_B").shape, (std::vector<int64_t>{32, 4}));
    EXPECT_EQ(f.info("base_model.model.lm_head.lora_A.weight").shape, (std::vector<int64_t>{4, 32}));
    EXPECT_EQ(f.info("base_model.model.lm_head.lora_B.weight").shape, (std::vector<int64_t>{61, 4}));
    EXPECT_FALSE(f.contains("base_model.model.model.embed_tokens.weight"));  // the base is not saved
    const auto cfg = read_file(dir.file("adapter/adapter_config.json"));
    EXPECT_NE(cfg.find("\"embed_tokens\""), std::string::npos);
    EXPECT_NE(cfg.find("\"lm_head\""), std::string::npos);
    auto fresh = tiny_model(35, tied);
    LoraOptions loaded;
    load_adapter(fresh, dir.file("adapter"), &loaded);
    const auto tokens = random_tokens(61, 2, 8, 14);
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(fresh->forward(tokens), m->forward(tokens))) << "tied " << tied;
  }
}
