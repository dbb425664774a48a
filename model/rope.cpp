// Rotary embeddings: frequency tables (plain, linear, llama3 scaling) and their application.
#include "model/rope.h"

#include "model/pointwise.h"  // defines: fused_rope

#include <cmath>

namespace ringtune {

torch::Tensor rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling) {
  auto idx = torch::arange(0, head_dim, 2, torch::kFloat64);
  auto inv_freq = 1.0 / torch::pow(theta, idx / static_cast<double>(head_dim));
  if (scaling.type == "linear") {
    inv_freq = inv_freq / scaling.factor;
  } else if (scaling.type == "llama3") {
    // Long wavelengths are divided by `factor`, short ones kept, the band between interpolated.
    const double old_len = static_cast<double>(scaling.original_max_position_embeddings);
    const double low_wavelen = old_len / scaling.low_freq_factor;
    const double high_wavelen = old_len / scaling.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv_freq;
    auto smooth = (old_len / wavelen - scaling.low_freq_factor) /
                  (scaling.high_freq_factor - scaling.low_freq_factor);
    auto smoothed = (1.0 - smooth) * inv_freq / scaling.factor + smooth * inv_freq;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq);
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& inv_freq,
                                                     const torch::Tensor& positions) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(positions.device());
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (auto fused = fused_rope(x, cos, sin); fused.defined()) return fused;  // model/pointwise.h
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  auto c = cos.unsqueeze(1).to(x.scalar_type());
  auto s = sin.unsqueeze(1).to(x.scalar_type());
  return x * c + rotated * s;
}

}  // namespace ringtune
