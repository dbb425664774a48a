// bf16 products widened to float32 on CPUs without bf16 matrix support (model/cpu_bf16.h):
//   - the autograd function (the linear layers' and LoRA's products) against float64, output and
//     every gradient, with and without the added term and with a scale, and against libtorch's own
//     bf16 product (as accurate or better);
//   - a LoRA model in bf16, forward and backward, widened against native, both held to the same
//     model in float32 (a counter shows the widened path is taken, and only there);
//   - the automatic setting follows the CPU's flags as /proc/cpuinfo lists them;
//   - a bad RINGTUNE_CPU_BF16_PRODUCTS is refused with exit code 2 and the variable named, and a
//     bf16 run says which products it uses.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "model/cpu_bf16.h"
#include "model/llama.h"
#include "model/lora.h"
#include "src/io/hf_model.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

// Sets the products' setting for one scope and puts the environment's back.
struct ForceWidened {
  explicit ForceWidened(bool widened) { set_cpu_bf16_products_widened(widened); }
  ~ForceWidened() { set_cpu_bf16_products_widened(false, /*reset=*/true); }
};

torch::Tensor f64(const torch::Tensor& t) { return t.detach().to(torch::kFloat64); }

double rel_norm_err(const torch::Tensor& got, const torch::Tensor& want) {
  return (f64(got) - f64(want)).norm().item<double>() / f64(want).norm().item<double>();
}

// Largest error of got against the float64 value, in units of bf16's rounding error at that
// value: half an ulp, 2^(e - 8) for |value| in [2^e, 2^(e+1)) (8 significant bits), after taking
// off float32's own bound for a sum of k products, k·2^-24 times the sum of their magnitudes
// (`magnitude`), which depends on the BLAS's order of summation. A float32 product rounded once
// to bf16 is within 1 of these units; a factor missing is far outside.
double worst_in_half_ulps(const torch::Tensor& got, const torch::Tensor& want, const torch::Tensor& magnitude,
                          int64_t k) {
  const auto w = f64(want), g = f64(got);
  const auto half_ulp = torch::pow(2.0, torch::floor(torch::log2(w.abs().clamp_min(1e-30))) - 8.0);
  const auto f32_bound = f64(magnitude) * (static_cast<double>(k + 1) * std::ldexp(1.0, -24));
  return (((g - w).abs() - f32_bound).clamp_min(0) / half_ulp).max().item<double>();
}

}  // namespace

TEST(CpuBf16, WidenedLinearMatchesFloat64AndItsGradients) {
  for (const bool with_c : {false, true}) {
    for (const double alpha : {1.0, 2.0}) {
      torch::manual_seed(with_c * 10 + static_cast<int>(alpha));
      auto x = torch::randn({37, 48}).to(torch::kBFloat16).requires_grad_(true);
      auto w = (torch::randn({29, 48}) * 0.2).to(torch::kBFloat16).requires_grad_(true);
      auto c = torch::randn({37, 29}).to(torch::kBFloat16).requires_grad_(true);
      const auto g = torch::randn({37, 29}).to(torch::kBFloat16);

      auto y = widened_linear(x, w, with_c ? c : torch::Tensor(), alpha);
      ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
      y.backward(g);

      // float64 of the same bf16 operands
      auto want_y = alpha * torch::mm(f64(x), f64(w).t());
      if (with_c) want_y = want_y + f64(c);
      const auto want_dx = alpha * torch::mm(f64(g), f64(w)), want_dw = alpha * torch::mm(f64(g).t(), f64(x));
      const auto ax = f64(x).abs(), aw = f64(w).abs(), ag = f64(g).abs();
      auto mag_y = alpha * torch::mm(ax, aw.t());
      if (with_c) mag_y = mag_y + f64(c).abs();
      const double ey = worst_in_half_ulps(y, want_y, mag_y, 48),
                   ex = worst_in_half_ulps(x.grad(), want_dx, alpha * torch::mm(ag, aw), 29),
                   ew = worst_in_half_ulps(w.grad(), want_dw, alpha * torch::mm(ag.t(), ax), 37);
      std::cout << "[ widened linear, c " << with_c << ", alpha " << alpha << " ] worst error in half bf16 ulps: y "
                << ey << ", dx " << ex << ", dw " << ew << "\n";
      ASSERT_TRUE(x.grad().defined() && w.grad().defined());
      EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
      EXPECT_EQ(w.grad().scalar_type(), torch::kBFloat16);
      // Stated bound: within 1.01 half-ulps beyond float32's own error bound of the sum.
      EXPECT_LT(ey, 1.01);
      EXPECT_LT(ex, 1.01);
      EXPECT_LT(ew, 1.01);
      if (with_c) {
        ASSERT_TRUE(c.grad().defined());
        EXPECT_TRUE(torch::equal(c.grad(), g));  // dy/dc is the identity
      } else {
        EXPECT_FALSE(c.grad().defined());
      }

      // As accurate as libtorch's bf16 product through autograd (native: one rounding as well,
      // with alpha applied in bf16 in backward), to within 10%.
      auto xn = x.detach().clone().requires_grad_(true), wn = w.detach().clone().requires_grad_(true);
      auto yn = with_c ? torch::addmm(c.detach(), xn, wn.t(), 1.0, alpha) : torch::mm(xn, wn.t()) * alpha;
      yn.backward(g);
      EXPECT_LE(rel_norm_err(y, want_y), 1.1 * rel_norm_err(yn, want_y) + 1e-6);
      EXPECT_LE(rel_norm_err(x.grad(), want_dx), 1.1 * rel_norm_err(xn.grad(), want_dx) + 1e-6);
      EXPECT_LE(rel_norm_err(w.grad(), want_dw), 1.1 * rel_norm_err(wn.grad(), want_dw) + 1e-6);
    }
  }
}

TEST(CpuBf16, LoraModelWidenedFollowsNativeAndFloat32) {
  // The same model and adapter in float32 (the reference) and bf16 with each product path.
  LoraOptions o;
  o.r = 4;
  o.lora_alpha = 8.0;
  o.lora_dropout = 0.0;
  o.target_modules = {"all-linear"};
  o.seed = 7;
  auto make = [&](const std::string& dtype) {
    auto m = load_hf_model(stories_dir(), dtype);
    apply_lora(m, o);
    torch::NoGradGuard ng;
    torch::manual_seed(3);  // B away from zero, the same draw for every model
    for (auto& p : m->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().copy_(torch::randn(p.value().sizes()) * 0.05);
    m->train();
    return m;
  };
  torch::manual_seed(11);
  const auto tokens = torch::randint(0, 512, {2, 40}, torch::kInt64);
  struct Result {
    torch::Tensor logits;
    std::map<std::string, torch::Tensor> grads;
  };
  auto run = [&](LlamaForCausalLM m) {
    Result r;
    auto logits = m->forward(tokens);
    auto loss = torch::nn::functional::cross_entropy(logits.narrow(1, 0, 39).reshape({-1, logits.size(-1)}),
                                                     tokens.narrow(1, 1, 39).reshape({-1}));
    loss.backward();
    r.logits = logits.detach();
    for (auto& p : m->named_parameters())
      if (p.value().requires_grad() && p.value().grad().defined()) r.grads[p.key()] = p.value().grad().clone();
    return r;
  };
  const Result ref = run(make("float32"));
  Result native, widened;
  const long long before = cpu_bf16_widened_products();
  {
    ForceWidened f(false);
    native = run(make("bfloat16"));
  }
  const long long after_native = cpu_bf16_widened_products();
  {
    ForceWidened f(true);
    widened = run(make("bfloat16"));
  }
  const long long after_widened = cpu_bf16_widened_products();
  EXPECT_EQ(after_native, before);  // native: no widened product
  // Widened: every linear layer's forward product and its input's gradient, at least.
  EXPECT_GE(after_widened - after_native, 2 * static_cast<long long>(ref.grads.size() / 2));
  ASSERT_GE(ref.grads.size(), 14u);  // A and B of 7 projections per layer
  ASSERT_EQ(native.grads.size(), ref.grads.size());
  ASSERT_EQ(widened.grads.size(), ref.grads.size());

  const double el_n = rel_norm_err(native.logits, ref.logits), el_w = rel_norm_err(widened.logits, ref.logits);
  // The adapter's gradients as one vector (each tensor on its own: small ones are mostly noise).
  auto all = [](const std::map<std::string, torch::Tensor>& m) {
    std::vector<torch::Tensor> v;
    for (const auto& [name, g] : m) v.push_back(g.flatten().to(torch::kFloat64));
    return torch::cat(v);
  };
  const double eg_n = rel_norm_err(all(native.grads), all(ref.grads)),
               eg_w = rel_norm_err(all(widened.grads), all(ref.grads));
  std::cout << "[ bf16 LoRA against float32 ] logits: native " << el_n << ", widened " << el_w
            << "; adapter gradients: native " << eg_n << ", widened " << eg_w << "\n";
  // Stated tolerance: the widened path within 1.25x the native path's error against float32
  // (both are bf16 arithmetic), and a gross error (a missing scale: about 100%) far outside.
  EXPECT_LT(el_w, 1.25 * el_n + 1e-4);
  EXPECT_LT(eg_w, 1.25 * eg_n + 1e-4);
  EXPECT_LT(el_w, 0.2);
  EXPECT_LT(eg_w, 0.2);
}

TEST(CpuBf16, AutomaticSettingFollowsTheCpuFlags) {
  const char* env = std::getenv("RINGTUNE_CPU_BF16_PRODUCTS");
  if (env && std::string(env) != "auto") GTEST_SKIP() << "RINGTUNE_CPU_BF16_PRODUCTS is set";
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  std::set<std::string> flags;
  std::string line;
  bool x86 = false;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;  // x86 lists "flags"; ARM "Features"
    x86 = true;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string f; words >> f;) flags.insert(f);
    break;
  }
  set_cpu_bf16_products_widened(false, /*reset=*/true);
  const bool avx512 = flags.count("avx512bw") && flags.count("avx512vl") && flags.count("avx512dq");
  std::cout << "[ cpu ] avx512bw/vl/dq " << avx512 << ": " << cpu_bf16_products_setting() << "\n";
  EXPECT_EQ(cpu_bf16_products_widened(), !(x86 && avx512));
  EXPECT_TRUE(widens(torch::zeros({2}, torch::kBFloat16)) == cpu_bf16_products_widened());
  EXPECT_FALSE(widens(torch::zeros({2}, torch::kFloat32)));
  EXPECT_FALSE(widens(torch::Tensor()));
}

TEST(CpuBf16, BadSettingIsRefusedAndTheRunSaysWhichProducts) {
  TempDir dir("ringtune-cpubf16");
  write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
  write_file(dir.file("train.jsonl"), weather_chats(8));
  write_file(dir.file("cfg.yaml"),
             "initial_base_model_ckpt_path: base\ntrain_path: train.jsonl\ncontext_length: 64\n"
             "generation_config:\n  prompt_format: llama2\nglobal_batch_size: 2\nmax_steps: 2\ndevice: cpu\n"
             "dtype: bfloat16\nlora_config: {r: 4, lora_alpha: 8}\n");
  const std::string args = "train " + dir.file("cfg.yaml") + " output_dir=";
  setenv("RINGTUNE_CPU_BF16_PRODUCTS", "fast", 1);
  auto bad = run_ringtune(args + dir.file("bad"));
  unsetenv("RINGTUNE_CPU_BF16_PRODUCTS");
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("RINGTUNE_CPU_BF16_PRODUCTS=fast: expected auto, native or float32"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(std::ifstream(dir.file("bad/metrics.jsonl")).good());  // nothing trained

  for (const char* value : {"float32", "native"}) {
    setenv("RINGTUNE_CPU_BF16_PRODUCTS", value, 1);
    auto ok = run_ringtune(args + dir.file(value));
    unsetenv("RINGTUNE_CPU_BF16_PRODUCTS");
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    const std::string want = std::string("bf16 products on this CPU: ") +
                             (std::string(value) == "native" ? "native" : "widened to float32") +
                             " (RINGTUNE_CPU_BF16_PRODUCTS=" + value + ")";
    EXPECT_NE((ok.out + ok.err).find(want), std::string::npos) << ok.out << ok.err;
    EXPECT_EQ(metrics_losses(dir.file(value)).size(), 2u);
  }
}
