// bf16 matrix products on CPUs without bf16 matrix support.
//
// libtorch multiplies bf16 matrices on the CPU through oneDNN only where the CPU has AVX-512 BW,
// VL and DQ (its mkldnn_bf16_device_check); elsewhere (AMD Zen 1-3, Intel client CPUs without
// AVX-512, ARM with libtorch 1.x) it runs a scalar loop: 4 GFLOP/s on one thread of an AMD EPYC
// without AVX-512 against 66 in float32, and a medium-shape LoRA step in bf16 took 170 s against
// 4.5 s in float32. On such CPUs ringtune widens its bf16 products: the bf16 operands are
// converted to float32 (the same values), multiplied by the float32 BLAS, and the result is
// rounded to bf16 once, which is the arithmetic of a bf16 GEMM with float32 accumulation (what
// oneDNN and torch.autocast compute), in another summation order. Activations, weights and
// saved tensors stay bf16; only the operands of the product being computed are widened.
// defines: cpu_bf16_products_widened, cpu_bf16_products_setting, set_cpu_bf16_products_widened,
//          cpu_bf16_widened_products, widens, bf16_matmul, widened_linear, cpu_has_float16_products
#pragma once
#include <string>

namespace at {
class Tensor;
}

namespace ringtune {

// Whether bf16 products on the CPU are widened to float32. From RINGTUNE_CPU_BF16_PRODUCTS:
// "native" (libtorch's own), "float32" (widened), unset or "auto" (widened unless the CPU has
// AVX-512 BW, VL and DQ). Another value throws std::invalid_argument naming the variable.
bool cpu_bf16_products_widened();

// One line for the log: the setting and why ("widened to float32: the CPU has no AVX-512 ...").
std::string cpu_bf16_products_setting();

// Products computed widened since the process started (forward and backward; for tests).
long long cpu_bf16_widened_products();

// Tests: force the setting (widened or native) or, with reset, go back to the environment's.
void set_cpu_bf16_products_widened(bool widened, bool reset = false);

// Whether a product with operand t is widened: t is a bf16 CPU tensor and the setting says so.
bool widens(const at::Tensor& t);

// a·b as torch::matmul, widened when both are bf16 CPU tensors and the setting says so. Autograd
// sees the casts and a float32 product (it keeps float32 copies of the operands it needs for
// backward): for products outside training's hot path (dense attention, no-grad passes).
at::Tensor bf16_matmul(const at::Tensor& a, const at::Tensor& b);

// y = c + alpha · x·wᵀ (c undefined: y = alpha · x·wᵀ) for bf16 x [.., in], w [out, in] and
// c [.., out] (any leading shape, y in x's), computed widened: the linear layers' product and LoRA's second product where
// widens(x). An autograd function whose forward and backward widen x and w for each product and
// save only x and w as they are (bf16), so no float32 copy of a weight outlives its product.
// Gradients for x, w and c as autograd through addmm gives them: c's is the incoming gradient,
// x's alpha·g·w and w's alpha·gᵀ·x, each a float32 product rounded once to the operand's dtype.
at::Tensor widened_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& c, double alpha);

// Whether this libtorch multiplies float16 matrices on the CPU: 1.13's GEMM has no float16 kernel
// ("addmm_impl_cpu_" not implemented for 'Half'), later versions have one. Asked of the library
// once. (float16 is not widened: load_hf_model refuses it on the CPU without this.)
bool cpu_has_float16_products();

}  // namespace ringtune
