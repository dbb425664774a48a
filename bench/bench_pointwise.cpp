// The decoder's pointwise work per layer and micro-batch (model/pointwise.h), fused kernels against
// libtorch's eager operators: RMSNorm (twice a layer), rotary embeddings of q and k, the SwiGLU
// product, each forward and backward, as a LoRA step runs them (inputs needing gradients, the
// weights frozen). Prints ms per layer (best of 7 rounds of 5) for each dtype and what that makes
// for a step of the shape. With the CPU block pool installed, as training runs.
// usage: bench_pointwise [d hidden_I heads tokens_per_microbatch layers microbatches]
//        (default: compare_peer's medium shape, d512 I1376 8 heads, 2 x 512 tokens, 8 layers, 2)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "model/pointwise.h"
#include "model/rope.h"
#include "src/cpu_pool.h"  // defines: install_cpu_pool

using namespace ringtune;

namespace {

// which: 1 RMSNorm (x2), 2 rotary (q and k), 4 SwiGLU; or-ed.
double layer_ms(torch::ScalarType dt, bool fused, int64_t d, int64_t inter, int64_t heads, int64_t tokens,
                int which = 7) {
  allow_fused_pointwise(fused);
  const int64_t B = 2, T = tokens / B, hd = d / heads;
  torch::manual_seed(1);
  auto x = torch::randn({B, T, d}).to(dt).requires_grad_(true);
  auto w = (torch::rand({d}) + 0.5).to(dt);
  auto q = torch::randn({B, T, heads, hd}).to(dt).requires_grad_(true);
  auto k = torch::randn({B, T, heads, hd}).to(dt).requires_grad_(true);
  auto gate = torch::randn({B * T, inter}).to(dt).requires_grad_(true);
  auto up = torch::randn({B * T, inter}).to(dt).requires_grad_(true);
  const auto positions = torch::arange(0, T, torch::kInt64).unsqueeze(0).repeat({B, 1});
  const auto tables = rope_cos_sin(rope_inv_freq(hd, 10000.0, RopeScaling{}), positions);
  const auto gx = torch::randn({B, T, d}).to(dt), gq = torch::randn({B, heads, T, hd}).to(dt),
             gs = torch::randn({B * T, inter}).to(dt);
  using torch::autograd::grad;  // the gradients returned, not accumulated into the inputs
  auto once = [&] {
    if (which & 1)
      for (int norm = 0; norm < 2; ++norm) grad({rms_norm(x, w, 1e-5)}, {x}, {gx});
    if (which & 2) {
      grad({apply_rope(q.transpose(1, 2), tables.first, tables.second)}, {q}, {gq});
      grad({apply_rope(k.transpose(1, 2), tables.first, tables.second)}, {k}, {gq});
    }
    if (which & 4) grad({swiglu(gate, up)}, {gate, up}, {gs});
  };
  once();
  double best = 1e30;
  for (int round = 0; round < 7; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) once();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 5);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  install_cpu_pool();  // as `ringtune train` runs
  const int64_t d = argc > 1 ? std::atoll(argv[1]) : 512, inter = argc > 2 ? std::atoll(argv[2]) : 1376,
                heads = argc > 3 ? std::atoll(argv[3]) : 8, tokens = argc > 4 ? std::atoll(argv[4]) : 1024,
                layers = argc > 5 ? std::atoll(argv[5]) : 8, micro = argc > 6 ? std::atoll(argv[6]) : 2;
  std::printf("pointwise work of one layer and micro-batch: d %lld, I %lld, %lld heads, %lld tokens; %d threads\n",
              static_cast<long long>(d), static_cast<long long>(inter), static_cast<long long>(heads),
              static_cast<long long>(tokens), torch::get_num_threads());
  for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
    const double eager = layer_ms(dt, false, d, inter, heads, tokens);
    const double fused = layer_ms(dt, true, d, inter, heads, tokens);
    std::printf("%-9s eager %7.2f ms, fused %7.2f ms (%.2fx); per step of %lld layers x %lld micro-batches: %.0f -> %.0f ms\n",
                dt == torch::kFloat32 ? "float32" : "bfloat16", eager, fused, eager / fused,
                static_cast<long long>(layers), static_cast<long long>(micro), eager * layers * micro,
                fused * layers * micro);
    const char* names[] = {"RMSNorm x2", "rotary q, k", "SwiGLU"};
    for (int op = 0; op < 3; ++op)
      std::printf("          %-12s eager %7.2f ms, fused %7.2f ms\n", names[op],
                  layer_ms(dt, false, d, inter, heads, tokens, 1 << op), layer_ms(dt, true, d, inter, heads, tokens, 1 << op));
  }
  return 0;
}
