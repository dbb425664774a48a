// Model building blocks: RoPE and RMSNorm against golden values from reference formulas
// (tests/golden/model/gen_rope_norm.py), grouped-query attention against a naive per-head
// reference computed here, KV-cache and packed-segment equivalences, config validation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model/llama.h"
#include "model/parameter_shapes.h"
#include "model/rope.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

nlohmann::json golden() {
  return nlohmann::json::parse(read_file(golden_dir() + "/model/rope_norm.json"));
}

torch::Tensor from_list(const nlohmann::json& a, std::vector<int64_t> shape,
                        torch::ScalarType t = torch::kFloat64) {
  auto v = a.get<std::vector<double>>();
  return torch::tensor(v, torch::kFloat64).reshape(shape).to(t);
}

LlamaConfig tiny_config(int64_t heads = 4, int64_t kv_heads = 2) {
  LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-5;
  return c;
}

}  // namespace

TEST(ModelUnit, RopeMatchesGolden) {
  auto g = golden();
  int cases = 0;
  for (const auto& c : g["rope"]) {
    RopeScaling s;
    s.type = c["scaling"]["type"].get<std::string>();
    if (s.type != "none") s.factor = c["scaling"]["factor"].get<double>();
    if (s.type == "llama3") {
      s.low_freq_factor = c["scaling"]["low_freq_factor"].get<double>();
      s.high_freq_factor = c["scaling"]["high_freq_factor"].get<double>();
      s.original_max_position_embeddings = c["scaling"]["original_max_position_embeddings"].get<int64_t>();
    }
    const int64_t hd = c["head_dim"].get<int64_t>();
    auto inv = rope_inv_freq(hd, c["theta"].get<double>(), s);
    auto expected_inv = from_list(c["inv_freq"], {hd / 2}, torch::kFloat32);
    if (s.type != "linear") {  // linear scaling divides positions in the reference instead
      EXPECT_TRUE(torch::allclose(inv, expected_inv, 1e-6, 1e-12)) << c["name"];
    }
    auto positions = torch::tensor(c["positions"].get<std::vector<int64_t>>()).unsqueeze(0);
    auto [cos, sin] = rope_cos_sin(inv, positions);
    auto shape = c["x_shape"].get<std::vector<int64_t>>();
    auto x = from_list(c["x"], shape, torch::kFloat32);
    auto out = apply_rope(x, cos, sin);
    auto expected = from_list(c["out"], shape, torch::kFloat32);
    // float32 angles at position 30000 carry ~2e-3 absolute phase error; compare accordingly.
    const double max_abs = (out - expected).abs().max().item<double>();
    EXPECT_LT(max_abs, 1e-2) << c["name"];
    auto near = out.narrow(2, 0, 5), near_ref = expected.narrow(2, 0, 5);  // positions <= 100
    EXPECT_LT((near - near_ref).abs().max().item<double>(), 1e-4) << c["name"];
    ++cases;
  }
  EXPECT_EQ(cases, 4);
}

TEST(ModelUnit, RopeLlama3ScalingKeepsHighFrequencies) {
  RopeScaling s{"llama3", 8.0, 1.0, 4.0, 8192};
  auto plain = rope_inv_freq(128, 500000.0, RopeScaling{});
  auto scaled = rope_inv_freq(128, 500000.0, s);
  EXPECT_FLOAT_EQ(scaled[0].item<float>(), plain[0].item<float>());  // shortest wavelength
  EXPECT_NEAR(scaled[63].item<float>(), plain[63].item<float>() / 8.0f, 1e-12);
}

TEST(ModelUnit, RMSNormMatchesGolden) {
  for (const auto& c : golden()["rmsnorm"]) {
    const int64_t d = c["dim"].get<int64_t>();
    RMSNorm norm(d, c["eps"].get<double>());
    torch::NoGradGuard ng;
    norm->weight.copy_(from_list(c["weight"], {d}, torch::kFloat32));
    auto x = from_list(c["x"], {3, d}, torch::kFloat32);
    auto out = norm(x);
    EXPECT_TRUE(torch::allclose(out, from_list(c["out"], {3, d}, torch::kFloat32), 1e-5, 1e-6));
  }
}

// Naive attention for one batch row: loops over heads, float64, explicit causal softmax.
torch::Tensor naive_attention(AttentionImpl& attn, const torch::Tensor& x, const torch::Tensor& cos,
                              const torch::Tensor& sin) {
  const int64_t t = x.size(1), h = attn.num_heads, kvh = attn.num_kv_heads, hd = attn.head_dim;
  auto q = apply_rope(torch::matmul(x, attn.q_proj->weight.t()).view({1, t, h, hd}).transpose(1, 2), cos, sin);
  auto k = apply_rope(torch::matmul(x, attn.k_proj->weight.t()).view({1, t, kvh, hd}).transpose(1, 2), cos, sin);
  auto v = torch::matmul(x, attn.v_proj->weight.t()).view({1, t, kvh, hd}).transpose(1, 2);
  auto out = torch::zeros({1, h, t, hd}, torch::kFloat64);
  for (int64_t head = 0; head < h; ++head) {
    const int64_t g = head / (h / kvh);  // Hugging Face repeat_kv grouping
    for (int64_t i = 0; i < t; ++i) {
      std::vector<double> w(i + 1);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        w[j] = (q[0][head][i].to(torch::kFloat64) * k[0][g][j].to(torch::kFloat64)).sum().item<double>() /
               std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, w[j]);
      }
      for (auto& e : w) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j <= i; ++j) out[0][head][i] += (w[j] / sum) * v[0][g][j].to(torch::kFloat64);
    }
  }
  auto merged = out.transpose(1, 2).reshape({1, t, h * hd}).to(torch::kFloat32);
  return torch::matmul(merged, attn.o_proj->weight.t());
}

TEST(ModelUnit, GroupedQueryAttentionMatchesNaive) {
  for (auto [heads, kv] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {4, 2}, {4, 1}, {6, 3}}) {
    torch::manual_seed(0);
    auto cfg = tiny_config(heads, kv);
    cfg.hidden_size = 8 * heads;
    LlamaForCausalLM model(cfg);
    model->init_weights(3, 0.2);
    auto* attn = model->model->layers[0]->as<DecoderLayerImpl>()->self_attn.get();
    torch::NoGradGuard ng;
    auto x = torch::randn({1, 9, cfg.hidden_size});
    auto inv = rope_inv_freq(cfg.resolved_head_dim(), cfg.rope_theta, cfg.rope_scaling);
    auto [cos, sin] = rope_cos_sin(inv, torch::arange(9).unsqueeze(0));
    auto got = attn->forward(x, cos, sin, {}, nullptr, 0);
    auto ref = naive_attention(*attn, x, cos, sin);
    EXPECT_LT((got - ref).abs().max().item<double>(), 1e-5) << heads << "/" << kv;
  }
}

TEST(ModelUnit, KVCacheStepsEqualFullForward) {
  auto cfg = tiny_config();
  LlamaForCausalLM model(cfg);
  model->init_weights(5, 0.1);
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, cfg.vocab_size, {2, 12});
  auto full = model->forward(tokens);
  auto cache = model->make_cache(2, 12);
  auto first = model->forward(tokens.narrow(1, 0, 5), {}, {}, &cache);  // prefill 5
  std::vector<torch::Tensor> parts{first};
  for (int64_t t = 5; t < 12; ++t) parts.push_back(model->forward(tokens.narrow(1, t, 1), {}, {}, &cache));
  auto stepped = torch::cat(parts, 1);
  EXPECT_LT((stepped - full).abs().max().item<double>(), 1e-5);
  EXPECT_THROW(model->forward(tokens.narrow(1, 0, 1), {}, {}, &cache), std::invalid_argument);
}

TEST(ModelUnit, PackedSegmentsEqualSeparateSequences) {
  auto cfg = tiny_config();
  LlamaForCausalLM model(cfg);
  model->init_weights(9, 0.1);
  torch::NoGradGuard ng;
  auto a = torch::randint(0, cfg.vocab_size, {1, 7});
  auto b = torch::randint(0, cfg.vocab_size, {1, 5});
  auto packed = torch::cat({a, b}, 1);
  auto positions = torch::cat({torch::arange(7), torch::arange(5)}).unsqueeze(0);
  auto segments = torch::cat({torch::zeros({7}, torch::kInt64), torch::ones({5}, torch::kInt64)}).unsqueeze(0);
  auto out = model->forward(packed, positions, AttentionMask{segments});
  EXPECT_LT((out.narrow(1, 0, 7) - model->forward(a)).abs().max().item<double>(), 1e-5);
  EXPECT_LT((out.narrow(1, 7, 5) - model->forward(b)).abs().max().item<double>(), 1e-5);
}

TEST(ModelUnit, UntiedHeadAndBiasesHaveHuggingFaceNames) {
  auto cfg = tiny_config();
  cfg.tie_word_embeddings = false;
  cfg.attention_bias = true;
  cfg.model_type = "qwen2";
  LlamaForCausalLM model(cfg);
  auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("lm_head.weight"));
  EXPECT_TRUE(params.contains("model.layers.1.self_attn.q_proj.bias"));
  EXPECT_TRUE(params.contains("model.layers.0.mlp.down_proj.weight"));
  EXPECT_FALSE(params.contains("model.layers.0.self_attn.o_proj.bias"));
  int64_t n = 0;
  for (const auto& p : params) n += p.value().numel();
  EXPECT_EQ(n, cfg.parameter_count());
}

// parameter_shapes() (what `inspect` and the loaders check files against without building the
// model) lists exactly the parameters the model registers, with their shapes.
TEST(ModelUnit, ParameterShapesAreThoseTheModelRegisters) {
  for (int variant = 0; variant < 4; ++variant) {
    auto cfg = tiny_config();
    cfg.tie_word_embeddings = variant % 2 == 0;
    cfg.attention_bias = variant == 1;
    cfg.mlp_bias = variant == 2;
    if (variant == 3) cfg.head_dim = 2 * cfg.hidden_size / cfg.num_attention_heads;
    LlamaForCausalLM model(cfg);
    const auto params = model->named_parameters();
    const auto shapes = parameter_shapes(cfg);
    EXPECT_EQ(shapes.size(), params.size()) << "variant " << variant;
    for (const auto& [name, shape] : shapes) {
      ASSERT_TRUE(params.contains(name)) << name << " (variant " << variant << ")";
      EXPECT_EQ(params[name].sizes().vec(), shape) << name << " (variant " << variant << ")";
    }
  }
}

TEST(ModelUnit, ConfigValidationNamesTheField) {
  auto expect_invalid = [](LlamaConfig c, const std::string& fragment) {
    try {
      c.validate();
      ADD_FAILURE() << "accepted; expected " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  auto c = tiny_config();
  c.num_key_value_heads = 3;
  expect_invalid(c, "num_key_value_heads = 3: must divide num_attention_heads (4)");
  c = tiny_config();
  c.model_type = "gpt2";
  expect_invalid(c, "model_type = \"gpt2\": unsupported model type");
  c = tiny_config();
  c.rope_scaling.type = "yarn";
  expect_invalid(c, "rope_scaling.type = \"yarn\": unsupported");
  c = tiny_config();
  c.hidden_size = 30;
  expect_invalid(c, "hidden_size = 30: not divisible by num_attention_heads (4)");
}
