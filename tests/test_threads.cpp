// Intra-op threads: ringtune's own kernels split their work with at::parallel_for, a header
// template whose threads exist only where the translation unit is compiled with OpenMP (before
// that was so, every kernel ran on one thread whatever OMP_NUM_THREADS said). Checked here:
//   - at::parallel_for in this build uses the threads it is given;
//   - every kernel that splits work over threads gives the same bits on 1, 2 and 3 threads, as
//     their comments promise (the block-wise attention, RMSNorm with its weight's gradient, rotary
//     embeddings, SwiGLU, the fused cross-entropy through the loss, NF4 dequantization), forward and
//     backward, in float32 and bf16. The tests run with OMP_NUM_THREADS=1 (tests/CMakeLists.txt),
//     so without these the threaded paths would never run here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "model/attention_kernel.h"
#include "model/llama.h"
#include "model/lora.h"
#include "model/pointwise.h"
#include "model/quant.h"
#include "src/train/loss.h"
#include "src/train/packing.h"
#include "forward_backward.h"

using namespace ringtune;
using ringtune_test::forward_backward;

namespace {

// Sets the intra-op threads for a scope.
struct Threads {
  int before = at::get_num_threads();
  explicit Threads(int n) { at::set_num_threads(n); }
  ~Threads() { at::set_num_threads(before); }
};

using Results = std::vector<torch::Tensor>;

// f's outputs (forward, then gradients) on 1, 2 and 3 threads: bit for bit the same; only the first
// `exact` of them when set, the rest within 1e-5 of their norm (results that went through
// libtorch's own threaded operators, whose sums split by thread count).
void expect_same_bits_on_any_thread_count(const std::string& what, const std::function<Results()>& f,
                                          size_t exact = SIZE_MAX) {
  SCOPED_TRACE(what);
  Results one;
  {
    Threads t(1);
    one = f();
  }
  for (const int n : {2, 3}) {
    Threads t(n);
    const Results r = f();
    ASSERT_EQ(r.size(), one.size());
    for (size_t i = 0; i < r.size(); ++i) {
      ASSERT_TRUE(r[i].defined() && one[i].defined()) << "result " << i;
      if (i >= exact) {
        const auto a = r[i].to(torch::kFloat64), b = one[i].to(torch::kFloat64);
        EXPECT_LE((a - b).norm().item<double>(), 1e-5 * b.norm().item<double>()) << "result " << i << " on " << n << " threads";
        continue;
      }
      EXPECT_TRUE(torch::equal(r[i], one[i])) << "result " << i << " on " << n << " threads differs from one thread's "
                                              << "(largest difference "
                                              << (r[i].to(torch::kFloat64) - one[i].to(torch::kFloat64)).abs().max().item<double>()
                                              << ")";
    }
  }
}

}  // namespace

TEST(Threads, ParallelForUsesTheThreadsItIsGiven) {
  Threads t(2);
  std::vector<int> seen(64, -1);
  at::parallel_for(0, 64, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) seen[static_cast<size_t>(i)] = at::get_thread_num();
  });
  const std::set<int> ids(seen.begin(), seen.end());
  EXPECT_EQ(ids, (std::set<int>{0, 1})) << "at::parallel_for ran on one thread: this build has no OpenMP";
}

TEST(Threads, KernelsGiveTheSameBitsOnAnyThreadCount) {
  torch::manual_seed(5);
  for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
    const std::string name = dt == torch::kFloat32 ? " float32" : " bf16";
    // Attention: 2 rows of 300 positions (3 query blocks), two segments each, 4 query heads over
    // 2 key/value heads.
    const int64_t B = 2, H = 4, K = 2, T = 300, hd = 16;
    const auto q = torch::randn({B, H, T, hd}), k = torch::randn({B, K, T, hd}), v = torch::randn({B, K, T, hd});
    const auto segments = torch::cat({torch::zeros({B, 170}), torch::ones({B, T - 170})}, 1).to(torch::kInt64);
    const auto starts = segment_run_starts(segments, B, T);
    const auto ga = torch::randn({B, H, T, hd});
    expect_same_bits_on_any_thread_count("attention" + name, [&] {
      return forward_backward([&](const auto& x) { return segment_causal_attention(x[0], x[1], x[2], starts); },
                              {q, k, v}, ga, dt);
    });

    // RMSNorm (a trained weight: its gradient is summed over row blocks), rows not a multiple of
    // the blocks.
    const auto x = torch::randn({3, 333, 96}), w = torch::rand({96}) + 0.5, gn = torch::randn({3, 333, 96});
    expect_same_bits_on_any_thread_count("RMSNorm" + name, [&] {
      return forward_backward([&](const auto& a) { return rms_norm(a[0], a[1], 1e-5); }, {x, w}, gn, dt);
    });

    // Rotary embeddings on the projections' layout: [B, T, H, hd] viewed as [B, H, T, hd].
    const auto xr = torch::randn({2, 257, 4, 32});
    const auto angles = torch::arange(257).to(torch::kFloat32).unsqueeze(1) * torch::rand({32}) * 0.1;
    const auto cos = angles.cos().unsqueeze(0).repeat({2, 1, 1}), sin = angles.sin().unsqueeze(0).repeat({2, 1, 1});
    const auto gr = torch::randn({2, 4, 257, 32});
    expect_same_bits_on_any_thread_count("rotary embeddings" + name, [&] {
      return forward_backward(
          [&](const auto& a) {
            auto y = fused_rope(a[0].transpose(1, 2), cos, sin);
            EXPECT_TRUE(y.defined()) << "the fused kernel did not apply";
            return y;
          },
          {xr}, gr, dt);
    });

    // SwiGLU.
    const auto g = torch::randn({3, 211, 80}), u = torch::randn({3, 211, 80}), gs = torch::randn({3, 211, 80});
    expect_same_bits_on_any_thread_count("SwiGLU" + name, [&] {
      return forward_backward([&](const auto& a) { return swiglu(a[0], a[1]); }, {g, u}, gs, dt);
    });
  }

  // The fused cross-entropy (a frozen output layer: the loss's gradient made in the forward pass,
  // rows split over threads, the per-row losses summed in row order), through the loss of a small
  // model whose adapter trains: the loss bit for bit; the adapter's gradients (through libtorch's
  // products and reductions: in float32 seen 3.7e-4 apart at most, on values up to ~100) close.
  LlamaConfig c;
  c.vocab_size = 301;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 160;
  std::vector<PackedSequence> seqs(3);
  torch::manual_seed(3);
  for (auto& s : seqs) {
    for (int t = 0; t < 150; ++t) {
      s.tokens.push_back(static_cast<int32_t>(torch::randint(0, c.vocab_size, {1}).item<int64_t>()));
      s.positions.push_back(t % 90);
      s.segments.push_back(t < 90 ? 0 : 1);
      const bool sup = t + 1 < 150 && t != 89;
      s.labels.push_back(sup ? static_cast<int32_t>(torch::randint(0, c.vocab_size, {1}).item<int64_t>()) : -100);
      s.supervised += sup;
    }
    s.used = 150;
  }
  for (const std::string dtype : {"float32", "bfloat16"}) {
    expect_same_bits_on_any_thread_count("loss " + dtype, [&] {
      torch::manual_seed(21);  // the adapter's initial values
      LlamaForCausalLM m(c);
      m->init_weights(17, 0.1);
      LoraOptions o;
      o.r = 4;
      o.target_modules = {"all-linear"};
      o.init_lora_weights = "false";  // B random too: every adapter gradient non-zero
      apply_lora(m, o);
      if (dtype == "bfloat16") m->to(torch::kBFloat16);
      for (auto& p : m->named_parameters())  // the adapters stay float32, as the trainer keeps them
        if (p.key().find("lora_") != std::string::npos) p.value().set_data(p.value().to(torch::kFloat32));
      m->train();
      SequenceBatch b;
      for (const auto& s : seqs) b.rows.push_back(&s);
      auto loss = batch_loss_sum(m, b);
      loss.backward();
      Results r{loss.detach().clone()};
      for (const auto& p : m->parameters())
        if (p.requires_grad()) r.push_back(p.grad().clone());
      return r;
    }, /*exact=*/1);
  }

  // NF4 dequantization (blocks split over threads).
  const auto weight = torch::randn({384, 256}) * 0.02;
  const auto q = nf4_quantize(weight);
  expect_same_bits_on_any_thread_count("NF4 dequantization", [&] {
    return Results{nf4_dequantize(q, torch::kFloat32), nf4_dequantize(q, torch::kBFloat16)};
  });
}
