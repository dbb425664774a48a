// bf16 products widened to float32 on CPUs without bf16 matrix support; see cpu_bf16.h.
#include "model/cpu_bf16.h"

#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <utility>

namespace ringtune {
namespace {

using torch::Tensor;

// libtorch's condition for its oneDNN bf16 matmul (aten/src/ATen/native/mkldnn/Utils.h,
// mkldnn_bf16_device_check, 1.13 to 2.x on x86): AVX-512 BW, VL and DQ.
bool cpu_has_bf16_matmul() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;  // libtorch 1.x has no bf16 matmul path but the scalar one off x86
#endif
}

// 1 widened, 0 native, -1 not forced (the environment's setting).
std::atomic<int> g_forced{-1};
std::atomic<long long> g_widened{0};  // products computed widened

struct Setting {
  bool widened;
  std::string why;
};

const Setting& env_setting() {
  static const Setting s = [] {
    const char* v = std::getenv("RINGTUNE_CPU_BF16_PRODUCTS");
    const std::string value = v ? v : "";
    if (value == "native") return Setting{false, "native (RINGTUNE_CPU_BF16_PRODUCTS=native)"};
    if (value == "float32") return Setting{true, "widened to float32 (RINGTUNE_CPU_BF16_PRODUCTS=float32)"};
    if (!value.empty() && value != "auto") {
      throw std::invalid_argument("RINGTUNE_CPU_BF16_PRODUCTS=" + value + ": expected auto, native or float32");
    }
    return cpu_has_bf16_matmul()
               ? Setting{false, "native (the CPU has AVX-512 BW/VL/DQ: libtorch multiplies bf16 through oneDNN)"}
               : Setting{true,
                         "widened to float32 (the CPU has no AVX-512 BW/VL/DQ, where libtorch's bf16 matmul "
                         "is a scalar loop; RINGTUNE_CPU_BF16_PRODUCTS=native to keep it)"};
  }();
  return s;
}

Tensor widen(const Tensor& t) { return t.to(torch::kFloat32); }

// A float32 product of widened operands (counted).
Tensor wide_mm(const Tensor& a, const Tensor& b) {
  g_widened.fetch_add(1, std::memory_order_relaxed);
  return torch::mm(a, b);
}

// y = [c +] alpha · x·wᵀ, widened. Two functions, with and without c, because libtorch 1.x's
// custom functions take no undefined tensor as an input.
Tensor widened_forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor* c,
                       double alpha) {
  // As autograd through addmm keeps them: x only for w's gradient, w only for x's.
  ctx->save_for_backward({w.requires_grad() ? x : Tensor(), x.requires_grad() ? w : Tensor()});
  ctx->saved_data["alpha"] = alpha;
  ctx->saved_data["grad_x"] = x.requires_grad();
  ctx->saved_data["grad_w"] = w.requires_grad();
  ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
  ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
  Tensor y = c ? widen(*c) : torch::empty({x.size(0), w.size(0)}, x.options().dtype(torch::kFloat32));
  g_widened.fetch_add(1, std::memory_order_relaxed);
  at::addmm_out(y, y, widen(x), widen(w).t(), c ? 1.0 : 0.0, alpha);
  return y.to(x.scalar_type());
}

// The gradients of x and w (undefined where not wanted): alpha·g·w and alpha·gᵀ·x.
std::pair<Tensor, Tensor> widened_backward(torch::autograd::AutogradContext* ctx, const Tensor& grad) {
  const auto saved = ctx->get_saved_variables();
  const Tensor &x = saved[0], &w = saved[1];
  const double alpha = ctx->saved_data["alpha"].toDouble();
  const Tensor g = widen(grad);
  auto product = [&](const Tensor& a, const Tensor& b, at::ScalarType dtype) {
    auto p = wide_mm(a, widen(b));
    if (alpha != 1.0) p.mul_(alpha);
    return p.to(dtype);
  };
  Tensor dx, dw;
  const auto dtype = [&](const char* key) { return static_cast<at::ScalarType>(ctx->saved_data[key].toInt()); };
  if (ctx->saved_data["grad_x"].toBool()) dx = product(g, w, dtype("x_dtype"));
  if (ctx->saved_data["grad_w"].toBool()) dw = product(g.t(), x, dtype("w_dtype"));
  return {dx, dw};
}

struct WidenedLinear : public torch::autograd::Function<WidenedLinear> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& w, double alpha) {
    return widened_forward(ctx, x, w, nullptr, alpha);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto [dx, dw] = widened_backward(ctx, grad[0]);
    return {dx, dw, Tensor()};
  }
};

struct WidenedAddLinear : public torch::autograd::Function<WidenedAddLinear> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& w, const Tensor& c,
                        double alpha) {
    ctx->saved_data["grad_c"] = c.requires_grad();
    return widened_forward(ctx, x, w, &c, alpha);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto [dx, dw] = widened_backward(ctx, grad[0]);
    return {dx, dw, ctx->saved_data["grad_c"].toBool() ? grad[0] : Tensor(), Tensor()};
  }
};

}  // namespace

bool cpu_bf16_products_widened() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  return forced >= 0 ? forced == 1 : env_setting().widened;
}

std::string cpu_bf16_products_setting() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return forced ? "widened to float32 (set by a test)" : "native (set by a test)";
  return env_setting().why;
}

void set_cpu_bf16_products_widened(bool widened, bool reset) { g_forced.store(reset ? -1 : widened ? 1 : 0); }

long long cpu_bf16_widened_products() { return g_widened.load(std::memory_order_relaxed); }

bool widens(const Tensor& t) {
  return t.defined() && t.scalar_type() == torch::kBFloat16 && t.device().is_cpu() && cpu_bf16_products_widened();
}

Tensor bf16_matmul(const Tensor& a, const Tensor& b) {
  if (widens(a) && widens(b)) {
    g_widened.fetch_add(1, std::memory_order_relaxed);
    return torch::matmul(widen(a), widen(b)).to(a.scalar_type());
  }
  return torch::matmul(a, b);
}

Tensor widened_linear(const Tensor& x, const Tensor& w, const Tensor& c, double alpha) {
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  const auto x2 = x.reshape({-1, x.size(-1)});
  return (c.defined() ? WidenedAddLinear::apply(x2, w, c.reshape({-1, w.size(0)}), alpha)
                      : WidenedLinear::apply(x2, w, alpha))
      .view(sizes);
}

bool cpu_has_float16_products() {
  static const bool has = [] {
    try {
      const auto a = torch::ones({2, 2}, torch::TensorOptions().dtype(torch::kFloat16));
      (void)torch::mm(a, a);
      return true;
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return has;
}

}  // namespace ringtune
