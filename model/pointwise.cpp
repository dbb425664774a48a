// Fused pointwise operations as autograd functions; see pointwise.h.
#include "model/pointwise.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "model/pointwise_kernel.h"  // defines: pointwise_kernels

namespace ringtune {

namespace {

std::atomic<bool> g_allow{[] {
  const char* v = std::getenv("RINGTUNE_FUSED_POINTWISE");
  return !(v && std::string(v) == "0");
}()};

bool applies(const torch::Tensor& x) {
  return fused_pointwise() && x.device().is_cpu() &&
         (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16);
}
bool is_bf16(const torch::Tensor& x) { return x.scalar_type() == torch::kBFloat16; }

// About 16 Ki values per task: the kernels are one pass over memory.
int64_t grain(int64_t values_per_item) { return std::max<int64_t>(1, (int64_t{16} << 10) / std::max<int64_t>(1, values_per_item)); }

// Rows per partial sum of RMSNorm's weight gradient: the partials are added in row order, so the
// gradient is the same whatever the number of threads.
constexpr int64_t kWeightGradRows = 64;

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double eps) {
    const int64_t d = x.size(-1);
    const auto xc = x.contiguous();
    const auto wc = w.contiguous();
    const int64_t rows = d ? xc.numel() / d : 0;
    auto y = torch::empty_like(xc);
    auto rstd = torch::empty({rows}, xc.options().dtype(torch::kFloat32));
    const auto& k = pointwise_kernels();
    const bool bf16 = is_bf16(xc);
    const void* xp = xc.data_ptr();
    const void* wp = wc.data_ptr();
    void* yp = y.data_ptr();
    float* rp = rstd.data_ptr<float>();
    at::parallel_for(0, rows, grain(d), [&](int64_t r0, int64_t r1) {
      k.rms_norm(bf16, xp, wp, yp, rp, d, static_cast<float>(eps), r0, r1);
    });
    ctx->save_for_backward({xc, wc, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &rstd = saved[2];
    const auto g = grad_out[0].to(x.scalar_type()).contiguous();
    const int64_t d = x.size(-1), rows = rstd.numel();
    const bool bf16 = is_bf16(x);
    const auto& k = pointwise_kernels();
    auto dx = torch::empty_like(x);
    const bool want_dw = ctx->needs_input_grad(1);
    const int64_t blocks = (rows + kWeightGradRows - 1) / kWeightGradRows;
    std::vector<float> partial(want_dw ? static_cast<size_t>(blocks * d) : 0, 0.0f);
    const void* xp = x.data_ptr();
    const void* wp = w.data_ptr();
    const void* gp = g.data_ptr();
    void* dxp = dx.data_ptr();
    const float* rp = rstd.data_ptr<float>();
    at::parallel_for(0, blocks, std::max<int64_t>(1, grain(d) / kWeightGradRows), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        float* dw = want_dw ? partial.data() + b * d : nullptr;
        k.rms_norm_backward(bf16, xp, wp, rp, gp, dxp, dw, d, b * kWeightGradRows,
                            std::min(rows, (b + 1) * kWeightGradRows));
      }
    });
    torch::Tensor dw;
    if (want_dw) {
      std::vector<double> sum(static_cast<size_t>(d), 0.0);
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t j = 0; j < d; ++j) sum[j] += partial[b * d + j];
      dw = torch::from_blob(sum.data(), {d}, torch::kFloat64).to(w.scalar_type());
    }
    return {dx, dw, torch::Tensor()};
  }
};

// x [B, H, T, hd] as rows of hd in [B, T, H] order; the tables' row r / H is position (b, t).
struct RopeFn : public torch::autograd::Function<RopeFn> {
  static torch::Tensor run(bool backward, const torch::Tensor& rows_bthd, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
    const int64_t heads = rows_bthd.size(2), hd = rows_bthd.size(3);
    const int64_t rows = rows_bthd.numel() / std::max<int64_t>(hd, 1);
    auto y = torch::empty_like(rows_bthd, torch::MemoryFormat::Contiguous);
    const auto& k = pointwise_kernels();
    const bool bf16 = is_bf16(rows_bthd);
    const void* xp = rows_bthd.data_ptr();
    void* yp = y.data_ptr();
    const float* cp = cos.data_ptr<float>();
    const float* sp = sin.data_ptr<float>();
    at::parallel_for(0, rows, grain(hd), [&](int64_t r0, int64_t r1) {
      k.rope(bf16, backward, xp, cp, sp, yp, hd, heads, r0, r1);
    });
    return y;
  }
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return run(false, x.transpose(1, 2), cos, sin).transpose(1, 2);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const auto g = grad_out[0].transpose(1, 2).contiguous();
    return {run(true, g, saved[0], saved[1]).transpose(1, 2), torch::Tensor(), torch::Tensor()};
  }
};

struct SwigluFn : public torch::autograd::Function<SwigluFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gate,
                               const torch::Tensor& up) {
    const auto g = gate.contiguous(), u = up.contiguous();
    auto y = torch::empty_like(g);
    const auto& k = pointwise_kernels();
    const bool bf16 = is_bf16(g);
    const void* gp = g.data_ptr();
    const void* up_ = u.data_ptr();
    void* yp = y.data_ptr();
    at::parallel_for(0, g.numel(), grain(1), [&](int64_t i0, int64_t i1) { k.swiglu(bf16, gp, up_, yp, i0, i1); });
    ctx->save_for_backward({g, u});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    const auto go = grad_out[0].to(g.scalar_type()).contiguous();
    auto dg = torch::empty_like(g), du = torch::empty_like(u);
    const auto& k = pointwise_kernels();
    const bool bf16 = is_bf16(g);
    const void* op = go.data_ptr();
    const void* gp = g.data_ptr();
    const void* up_ = u.data_ptr();
    void* dgp = dg.data_ptr();
    void* dup = du.data_ptr();
    at::parallel_for(0, g.numel(), grain(1),
                     [&](int64_t i0, int64_t i1) { k.swiglu_backward(bf16, op, gp, up_, dgp, dup, i0, i1); });
    return {dg, du};
  }
};

}  // namespace

bool fused_pointwise() { return g_allow.load(std::memory_order_relaxed); }

void allow_fused_pointwise(bool allow) { g_allow.store(allow); }

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (applies(x) && weight.scalar_type() == x.scalar_type() && weight.dim() == 1 && x.dim() >= 1 &&
      weight.size(0) == x.size(-1) && weight.device() == x.device())
    return RmsNormFn::apply(x, weight, eps);
  // As Hugging Face: normalise in float32, cast back, then scale.
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

torch::Tensor fused_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (!applies(x) || x.dim() != 4 || x.size(3) % 2 != 0 || !x.transpose(1, 2).is_contiguous()) return {};
  const auto want = std::vector<int64_t>{x.size(0), x.size(2), x.size(3)};
  for (const auto* t : {&cos, &sin})
    if (t->sizes() != at::IntArrayRef(want) || t->scalar_type() != torch::kFloat32 || !t->is_contiguous() ||
        t->device() != x.device() || t->requires_grad())
      return {};
  return RopeFn::apply(x, cos, sin);
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  if (applies(gate) && up.scalar_type() == gate.scalar_type() && up.sizes() == gate.sizes() &&
      up.device() == gate.device())
    return SwigluFn::apply(gate, up);
  return torch::silu(gate) * up;
}

}  // namespace ringtune
