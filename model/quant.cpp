// Blockwise NF4 and dynamic 8-bit quantization; see quant.h.
#include "model/quant.h"

#include <array>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ringtune {

const std::array<float, 16>& nf4_code() {
  // QLoRA's NormalFloat4: quantiles of N(0, 1) normalised to [-1, 1], one extra positive value
  // so that 0 is exact (tests/golden/quant re-derives them with scipy).
  static const std::array<float, 16> code{
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
      0.7229568362236023f, 1.0f};
  return code;
}

namespace {

// bitsandbytes's dynamic map: for each exponent i of 7, the midpoints of an evenly spaced grid on
// [0.1, 1] (2^i + 1 points signed, 2^(i+1) + 1 unsigned) scaled by 10^(i - 6), mirrored when
// signed; plus 0 and 1. All in float32, as torch computes it.
std::array<float, 256> make_dynamic_map(bool is_signed) {
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int points = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
    // torch.linspace(0.1, 1, points) in float32: the first half counted up from 0.1, the second
    // half down from 1
    const float lo = 0.1f, hi = 1.0f, step = (hi - lo) / static_cast<float>(points - 1);
    auto grid = [&](int k) {
      return k < points / 2 ? lo + static_cast<float>(k) * step : hi - static_cast<float>(points - 1 - k) * step;
    };
    const float scale = static_cast<float>(std::pow(10.0, i - 6));
    for (int k = 0; k + 1 < points; ++k) {
      const float mid = (grid(k) + grid(k + 1)) / 2.0f;
      data.push_back(scale * mid);
      if (is_signed) data.push_back(-scale * mid);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  if (data.size() != 256) throw std::logic_error("dynamic map: " + std::to_string(data.size()) + " values");
  std::sort(data.begin(), data.end());
  std::array<float, 256> out{};
  std::copy(data.begin(), data.end(), out.begin());
  return out;
}

}  // namespace

const std::array<float, 256>& dynamic_map(bool is_signed) {
  static const std::array<float, 256> signed_map = make_dynamic_map(true);
  static const std::array<float, 256> unsigned_map = make_dynamic_map(false);
  return is_signed ? signed_map : unsigned_map;
}

uint8_t quantize_index(const float* code, int n, float x) {
  // Count of midpoints strictly below x: binary search for the first midpoint >= x.
  int lo = 0, hi = n - 1;  // answer in [0, n-1]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    const float m = (code[mid] + code[mid + 1]) / 2.0f;
    if (m < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return static_cast<uint8_t>(lo);
}

namespace {

// 1 / max(absmax, 1e-38) and the clamped scaled value, as bitsandbytes.
inline float inverse_scale(float absmax) { return 1.0f / std::max(absmax, 1e-38f); }
inline float scaled(float x, float inv) { return std::min(1.0f, std::max(-1.0f, x * inv)); }

int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }

float block_absmax(const float* x, int64_t lo, int64_t hi) {
  float m = 0.0f;
  for (int64_t i = lo; i < hi; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

namespace {

// The 255 midpoints between neighbouring values of a 256-value code, as quantize_index computes
// them, so the search reads one table entry per step (8-bit AdamW quantizes every moment value of
// every step: this is its hot loop).
using Midpoints = std::array<float, 255>;
Midpoints midpoints_of(const float* code) {
  Midpoints m;
  for (int i = 0; i < 255; ++i) m[i] = (code[i] + code[i + 1]) / 2.0f;
  return m;
}
const Midpoints& midpoints(const float* code, Midpoints& scratch) {
  static const Midpoints signed_mids = midpoints_of(dynamic_map(true).data());
  static const Midpoints unsigned_mids = midpoints_of(dynamic_map(false).data());
  if (code == dynamic_map(true).data()) return signed_mids;
  if (code == dynamic_map(false).data()) return unsigned_mids;
  scratch = midpoints_of(code);
  return scratch;
}
// quantize_index(code, 256, x): the count of midpoints strictly below x, by a branch-free binary
// search (after the steps 128, 64, ..., 1 every midpoint before idx is below x and none after).
inline uint8_t count_below(const Midpoints& m, float x) {
  int idx = 0;
  for (int step = 128; step >= 1; step >>= 1) idx += m[idx + step - 1] < x ? step : 0;
  return static_cast<uint8_t>(idx);
}

}  // namespace

void quantize_blockwise8(const float* x, int64_t n, int64_t block, const float* code, uint8_t* q, float* absmax) {
  Midpoints scratch;
  const Midpoints& mids = midpoints(code, scratch);
  at::parallel_for(0, blocks_of(n, block), 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(n, lo + block);
      absmax[b] = block_absmax(x, lo, hi);
      const float inv = inverse_scale(absmax[b]);
      for (int64_t i = lo; i < hi; ++i) q[i] = count_below(mids, scaled(x[i], inv));
    }
  });
}

void dequantize_blockwise8(const uint8_t* q, const float* absmax, int64_t n, int64_t block, const float* code,
                           float* out) {
  at::parallel_for(0, blocks_of(n, block), 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(n, lo + block);
      const float s = absmax[b];
      for (int64_t i = lo; i < hi; ++i) out[i] = code[q[i]] * s;
    }
  });
}

int64_t Nf4Weight::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Nf4Weight::bytes() const {
  int64_t b = packed.numel() + absmax2.numel() * 4 + 4;
  if (absmax_q.defined()) b += absmax_q.numel();
  return b;
}

Nf4Weight nf4_quantize(const at::Tensor& w, bool double_quant, int64_t block) {
  if (block < 2 || block % 2 != 0) throw std::invalid_argument("nf4_quantize: block " + std::to_string(block));
  const auto x = w.detach().to(torch::kCPU, torch::kFloat32).contiguous().reshape({-1});
  const int64_t n = x.numel(), blocks = blocks_of(n, block);
  Nf4Weight q;
  q.shape = w.sizes().vec();
  q.block = block;
  q.packed = torch::empty({(n + 1) / 2}, torch::kUInt8);
  auto absmax = torch::empty({blocks}, torch::kFloat32);
  const float* src = x.data_ptr<float>();
  uint8_t* dst = q.packed.data_ptr<uint8_t>();
  float* am = absmax.data_ptr<float>();
  const float* code = nf4_code().data();
  at::parallel_for(0, blocks, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(n, lo + block);
      am[b] = block_absmax(src, lo, hi);
      const float inv = inverse_scale(am[b]);
      for (int64_t i = lo; i < hi; i += 2) {  // block is even: a pair never straddles blocks
        const uint8_t first = quantize_index(code, 16, scaled(src[i], inv));
        const uint8_t second = i + 1 < hi ? quantize_index(code, 16, scaled(src[i + 1], inv))
                                          : quantize_index(code, 16, 0.0f);  // padding, as bitsandbytes
        dst[i / 2] = static_cast<uint8_t>(first << 4 | second);
      }
    }
  });
  if (!double_quant) {
    q.absmax2 = absmax;
  } else {
    q.offset = absmax.mean().item<float>();
    const auto centred = absmax - q.offset;
    q.absmax_q = torch::empty({blocks}, torch::kUInt8);
    q.absmax2 = torch::empty({blocks_of(blocks, 256)}, torch::kFloat32);
    quantize_blockwise8(centred.data_ptr<float>(), blocks, 256, dynamic_map(true).data(),
                        q.absmax_q.data_ptr<uint8_t>(), q.absmax2.data_ptr<float>());
  }
  if (!w.device().is_cpu()) {
    q.packed = q.packed.to(w.device());
    q.absmax2 = q.absmax2.to(w.device());
    if (q.absmax_q.defined()) q.absmax_q = q.absmax_q.to(w.device());
  }
  return q;
}

at::Tensor nf4_scales(const Nf4Weight& q) {
  if (!q.absmax_q.defined()) return q.absmax2;
  const auto dev = q.absmax_q.device();
  const auto code = torch::from_blob(const_cast<float*>(dynamic_map(true).data()), {256}, torch::kFloat32).to(dev);
  const int64_t blocks = q.absmax_q.numel();
  auto idx = torch::arange(blocks, torch::TensorOptions().dtype(torch::kLong).device(dev)).div(256, "floor");
  return code.index_select(0, q.absmax_q.to(torch::kLong)) * q.absmax2.index_select(0, idx) + q.offset;
}

namespace {

// Rows [r0, r0 + rows) x columns [c0, c0 + cols) of q read as a matrix with `ld` columns, into
// `out` row by row: each value is the code times its block's float32 scale, rounded once to the
// output's dtype.
void dequantize_tile(const Nf4Weight& q, const at::Tensor& scales, int64_t ld, int64_t r0, int64_t rows, int64_t c0,
                     int64_t cols, const at::Tensor& out) {
  if (!q.packed.device().is_cpu() || !out.device().is_cpu() || !out.is_contiguous() || out.numel() < rows * cols)
    throw std::invalid_argument("NF4 dequantization into a buffer: needs CPU tensors and a contiguous output of " +
                                std::to_string(rows * cols) + " elements");
  const float* code = nf4_code().data();
  const uint8_t* src = q.packed.data_ptr<uint8_t>();
  const float* s = scales.data_ptr<float>();
  const int64_t block = q.block, piece = 4096, pieces = (cols + piece - 1) / piece;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "nf4_dequantize", [&] {
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows * pieces, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = t / pieces, lo = (t % pieces) * piece, hi = std::min(cols, lo + piece);
        // Element i of the weight goes to d[i - first]; a run within one block shares its scale.
        const int64_t first = (r0 + r) * ld + c0;
        scalar_t* d = dst + r * cols;
        for (int64_t i = first + lo, end = first + hi; i < end;) {
          const int64_t b = i / block, run_end = std::min(end, (b + 1) * block);
          const float sb = s[b];
          for (; i < run_end; ++i) {
            const uint8_t byte = src[i >> 1];
            d[i - first] = static_cast<scalar_t>(code[(i & 1) ? byte & 0x0F : byte >> 4] * sb);
          }
        }
      }
    });
  });
}

}  // namespace

at::Tensor nf4_dequantize_into(const Nf4Weight& q, const at::Tensor& out) {
  const int64_t n = q.numel();
  dequantize_tile(q, nf4_scales(q).contiguous(), n, 0, 1, 0, n, out);
  return out.narrow(0, 0, n).view(q.shape);
}

at::Tensor nf4_dequantize_tile_into(const Nf4Weight& q, const at::Tensor& scales, int64_t r0, int64_t rows,
                                    int64_t c0, int64_t cols, const at::Tensor& out) {
  if (q.shape.size() != 2 || r0 < 0 || c0 < 0 || r0 + rows > q.shape[0] || c0 + cols > q.shape[1])
    throw std::invalid_argument("nf4_dequantize_tile_into: tile outside the weight");
  dequantize_tile(q, scales, q.shape[1], r0, rows, c0, cols, out);
  return out.narrow(0, 0, rows * cols).view({rows, cols});
}

at::Tensor nf4_dequantize(const Nf4Weight& q, at::ScalarType dtype) {
  const int64_t n = q.numel();
  if (q.packed.device().is_cpu()) return nf4_dequantize_into(q, torch::empty({n}, torch::TensorOptions().dtype(dtype)));
  // Other devices: the same in tensor operations.
  const auto scales = nf4_scales(q).contiguous();
  const float* code = nf4_code().data();
  const auto dev = q.packed.device();
  const auto table = torch::from_blob(const_cast<float*>(code), {16}, torch::kFloat32).to(dev);
  const auto hi = q.packed.bitwise_right_shift(4), lo = q.packed.bitwise_and(0x0F);
  const auto idx = torch::stack({hi, lo}, 1).reshape({-1}).slice(0, 0, n).to(torch::kLong);
  auto block_of = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(dev)).div(q.block, "floor");
  return (table.index_select(0, idx) * scales.index_select(0, block_of)).to(dtype).reshape(q.shape);
}

}  // namespace ringtune
