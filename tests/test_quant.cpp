// NF4 and dynamic 8-bit blockwise quantization (model/quant.h) against references nobody here
// wrote: the NF4 table re-derived from normal quantiles with scipy and bitsandbytes's published
// one, bitsandbytes's dynamic maps re-derived from its definition (tests/golden/quant/
// make_quant_golden.py), bitsandbytes's own error statistics for randn(1024, 1024), and
// onnxruntime's MatMulBnb4 operator fed ringtune's packed weights (tests/golden/quant/
// ort_matmulbnb4.mjs). Then the NF4 Linear: forward and backward against the dequantized weight.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <vector>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "model/llama.h"
#include "model/quant.h"
#include "test_util.h"

using namespace ringtune;
using namespace ringtune_test;

namespace {

nlohmann::json golden(const std::string& name) {
  return nlohmann::json::parse(read_file(golden_dir() + "/quant/" + name));
}

// Straightforward reference dequantization in tensor operations (unpack nibbles, look up, scale).
torch::Tensor reference_dequant(const Nf4Weight& q) {
  const auto code = torch::tensor(std::vector<float>(nf4_code().begin(), nf4_code().end()));
  const auto hi = q.packed.to(torch::kLong).floor_divide(16), lo = q.packed.to(torch::kLong).remainder(16);
  const auto idx = torch::stack({hi, lo}, 1).reshape({-1}).slice(0, 0, q.numel());
  const auto scale = nf4_scales(q).repeat_interleave(q.block).slice(0, 0, q.numel());
  return (code.index_select(0, idx) * scale).reshape(q.shape);
}

}  // namespace

TEST(Quant, Nf4TableIsBitsandbytesAndTheNormalQuantiles) {
  const auto g = golden("quant_golden.json");
  const auto published = g["nf4_published_by_bitsandbytes"].get<std::vector<double>>();
  const auto derived = g["nf4_from_normal_quantiles"].get<std::vector<double>>();
  ASSERT_EQ(published.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(nf4_code()[i], static_cast<float>(published[i])) << i;
    // scipy's quantiles in float32 land within one float32 ulp (~6e-8 near 0.5) of the table
    EXPECT_NEAR(nf4_code()[i], derived[i], 1.2e-7) << i;
  }
}

TEST(Quant, DynamicMapsAreBitsandbytes) {
  const auto g = golden("quant_golden.json");
  for (const bool is_signed : {true, false}) {
    const auto want = g[is_signed ? "dynamic_signed" : "dynamic_unsigned"].get<std::vector<double>>();
    ASSERT_EQ(want.size(), 256u);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(dynamic_map(is_signed)[i], static_cast<float>(want[i])) << is_signed << " " << i;
  }
}

TEST(Quant, NearestIndexIsTheNearestCodeValue) {
  torch::manual_seed(1);
  const auto x = torch::rand({20000}) * 2 - 1;
  for (const bool is_signed : {true, false}) {
    const float* code = dynamic_map(is_signed).data();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float v = is_signed ? x[i].item<float>() : std::fabs(x[i].item<float>());
      int best = 0;
      for (int k = 1; k < 256; ++k)
        if (std::fabs(code[k] - v) < std::fabs(code[best] - v)) best = k;
      const int got = quantize_index(code, 256, v);
      // equal, or an exact tie between neighbours (the rule sends ties down)
      if (got != best) {
        EXPECT_EQ(std::fabs(code[got] - v), std::fabs(code[best] - v)) << v;
      }
    }
  }
}

// quantize_blockwise8's table search gives quantize_index's codes: random values, every code value
// and every midpoint exactly (ties), the ends, zero, a NaN, and a code table of its own.
TEST(Quant, BlockwiseSearchEqualsQuantizeIndex) {
  torch::manual_seed(2);
  for (const bool is_signed : {true, false}) {
    const float* code = dynamic_map(is_signed).data();
    std::vector<float> v;
    const auto r = torch::rand({4096}) * 2 - 1;
    for (int64_t i = 0; i < r.numel(); ++i) v.push_back(r[i].item<float>());
    for (int k = 0; k < 256; ++k) v.push_back(code[k]);
    for (int k = 0; k < 255; ++k) v.push_back((code[k] + code[k + 1]) / 2.0f);
    for (float e : {-1.0f, 1.0f, 0.0f, -0.0f, 1e-30f, -1e-30f, std::nanf("")}) v.push_back(e);
    v.push_back(1.0f);  // the block's absmax is 1: values are their own scaled values
    std::vector<uint8_t> q(v.size());
    float absmax = 0;
    quantize_blockwise8(v.data(), static_cast<int64_t>(v.size()), static_cast<int64_t>(v.size()), code, q.data(), &absmax);
    ASSERT_EQ(absmax, 1.0f);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(q[i], quantize_index(code, 256, v[i])) << is_signed << " " << v[i];
  }
  std::array<float, 256> own;  // not one of the cached tables
  for (int k = 0; k < 256; ++k) own[k] = -1.0f + 2.0f * static_cast<float>(k * k) / (255.0f * 255.0f);
  std::vector<float> v;
  for (int k = -300; k <= 300; ++k) v.push_back(static_cast<float>(k) / 300.0f);
  std::vector<uint8_t> q(v.size());
  float absmax = 0;
  quantize_blockwise8(v.data(), static_cast<int64_t>(v.size()), static_cast<int64_t>(v.size()), own.data(), q.data(), &absmax);
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(q[i], quantize_index(own.data(), 256, v[i])) << v[i];
}

TEST(Quant, Nf4PacksTheFirstElementInTheHighNibble) {
  // one block, absmax 1: 1.0 -> 15, -1.0 -> 0, 0 -> 7, 0.5 -> 12 (below the 0.4407/0.5626
  // midpoint), 0.6 -> 13; the odd element count pads the last byte's low nibble with 0's code 7.
  auto q = nf4_quantize(torch::tensor({1.0f, -1.0f, 0.0f, 0.5f, 0.6f}), /*double_quant=*/false);
  ASSERT_EQ(q.packed.numel(), 3);
  EXPECT_EQ(q.packed[0].item<int>(), 0xF0);
  EXPECT_EQ(q.packed[1].item<int>(), 0x7C);
  EXPECT_EQ(q.packed[2].item<int>(), 0xD7);
  EXPECT_EQ(q.absmax2[0].item<float>(), 1.0f);
  // an all-zero block quantizes to 0's code and dequantizes to zeros
  auto z = nf4_quantize(torch::zeros({64}), false);
  EXPECT_EQ(z.packed[0].item<int>(), 0x77);
  EXPECT_EQ(nf4_dequantize(z, torch::kFloat32).abs().max().item<float>(), 0.0f);
}

TEST(Quant, Nf4ErrorMatchesBitsandbytesStatistics) {
  // bitsandbytes test_4bit_quant: randn(1024, 1024), NF4, blocksize 64; mean absolute error
  // 0.072798 (std 0.000074 over its samples), mean relative error 0.203339 (std 0.000340); its
  // test fails above mean + 7 std. Held here on both sides, over three seeds, with double
  // quantization (bitsandbytes measures without; the 8-bit scales add little) and without.
  const auto g = golden("quant_golden.json");
  const auto err = g["nf4_randn_1024_block64_err"].get<std::vector<double>>();
  const auto rel = g["nf4_randn_1024_block64_rel_err"].get<std::vector<double>>();
  for (const bool dq : {false, true}) {
    for (int seed : {0, 1, 2}) {
      torch::manual_seed(seed);
      const auto a = torch::randn({1024, 1024});
      const auto q = nf4_quantize(a, dq);
      const auto b = nf4_dequantize(q, torch::kFloat32);
      const auto e = (a - b).abs();
      const double mae = e.mean().item<double>(), mre = (e / (a.abs() + 1e-8)).mean().item<double>();
      EXPECT_LT(std::fabs(mae - err[0]), 7 * err[1]) << "double_quant " << dq << " seed " << seed << " mae " << mae;
      EXPECT_LT(std::fabs(mre - rel[0]), 7 * rel[1]) << "double_quant " << dq << " seed " << seed << " mre " << mre;
      EXPECT_TRUE(torch::equal(b, reference_dequant(q)));
    }
  }
}

TEST(Quant, DoubleQuantizedScalesAreCloseToTheBlockAbsmax) {
  torch::manual_seed(4);
  const auto a = torch::randn({300, 640}) * torch::linspace(0.01, 3, 640);  // scales vary a lot
  const auto plain = nf4_quantize(a, false), dq = nf4_quantize(a, true);
  ASSERT_EQ(dq.absmax_q.numel(), 3000);
  ASSERT_EQ(dq.absmax2.numel(), 12);  // ceil(3000 / 256)
  EXPECT_NEAR(dq.offset, plain.absmax2.mean().item<float>(), 1e-6);
  const auto s = nf4_scales(dq), exact = plain.absmax2;
  // the 8-bit dynamic code's step near 1 is ~1.4%: the worst scale error stays within that of
  // the block's centred range
  const auto centred_max = (exact - dq.offset).abs().max().item<float>();
  EXPECT_LT((s - exact).abs().max().item<float>(), 0.01f * centred_max);
  // packed codes do not depend on double quantization; the bytes: 0.5 per weight + 1 per 64
  EXPECT_TRUE(torch::equal(plain.packed, dq.packed));
  EXPECT_EQ(dq.bytes(), 300 * 640 / 2 + 3000 + 12 * 4 + 4);
  // bfloat16 dequantization is the float32 one rounded once
  EXPECT_TRUE(torch::equal(nf4_dequantize(dq, torch::kBFloat16), nf4_dequantize(dq, torch::kFloat32).to(torch::kBFloat16)));
}

TEST(Quant, Blockwise8RoundTrip) {
  torch::manual_seed(5);
  const auto x = torch::randn({5000}) * 0.01;  // 20 blocks of 256, the last one short
  std::vector<uint8_t> q(5000);
  std::vector<float> absmax(20), back(5000);
  quantize_blockwise8(x.data_ptr<float>(), 5000, 256, dynamic_map(true).data(), q.data(), absmax.data());
  dequantize_blockwise8(q.data(), absmax.data(), 5000, 256, dynamic_map(true).data(), back.data());
  const auto b = torch::from_blob(back.data(), {5000});
  for (int blk = 0; blk < 20; ++blk) {
    const auto part = x.slice(0, blk * 256, std::min<int64_t>(5000, (blk + 1) * 256));
    EXPECT_EQ(absmax[blk], part.abs().max().item<float>());
  }
  // relative to the block absmax, the dynamic code's worst gap near 1 is 1/71 (~1.4%)
  const auto rel = ((x - b).abs() / torch::from_blob(absmax.data(), {20}).repeat_interleave(256).slice(0, 0, 5000));
  EXPECT_LT(rel.max().item<float>(), 0.0071f);
}

TEST(Quant, OnnxruntimeMatMulBnb4AgreesWithRingtune) {
  // tests/golden/quant/ort_matmulbnb4.mjs fed ringtune's packed NF4 weights and scales to
  // onnxruntime's MatMulBnb4 (quant_type 1 = NF4) and recorded its output.
  const auto g = golden("ort_matmulbnb4.json");
  const int64_t m = g["M"], n = g["N"], k = g["K"];
  const auto w = torch::tensor(g["W"].get<std::vector<float>>()).reshape({n, k});
  const auto a = torch::tensor(g["A"].get<std::vector<float>>()).reshape({m, k});
  const auto y = torch::tensor(g["Y"].get<std::vector<float>>()).reshape({m, n});
  const auto q = nf4_quantize(w);
  // ringtune still makes the bytes and scales the oracle was fed
  const auto packed = g["packed"].get<std::vector<int>>();
  ASSERT_EQ(q.packed.numel(), static_cast<int64_t>(packed.size()));
  for (size_t i = 0; i < packed.size(); ++i) ASSERT_EQ(q.packed[i].item<int>(), packed[i]) << i;
  const auto scales = nf4_scales(q);
  const auto absmax = g["absmax"].get<std::vector<float>>();
  for (size_t i = 0; i < absmax.size(); ++i) ASSERT_EQ(scales[i].item<float>(), absmax[i]) << i;
  // and its matmul over the dequantized weight is onnxruntime's
  const auto ours = torch::matmul(a, nf4_dequantize(q, torch::kFloat32).t());
  std::cout << "[ onnxruntime ] " << g["generator"].get<std::string>() << ": max |ringtune - onnxruntime| "
            << (ours - y).abs().max().item<float>() << " (max |Y| " << y.abs().max().item<float>() << ")\n";
  EXPECT_LT((ours - y).abs().max().item<float>(), 1e-5 * (1 + y.abs().max().item<float>()));
}

// Writes the inputs of the onnxruntime oracle: a generator, run by hand (see ort_matmulbnb4.mjs)
// with --gtest_also_run_disabled_tests, not part of the suite.
TEST(Quant, DISABLED_WriteOnnxruntimeInput) {
  const char* out = std::getenv("RINGTUNE_WRITE_ORT_INPUT");
  ASSERT_NE(out, nullptr) << "set RINGTUNE_WRITE_ORT_INPUT=FILE";
  const int64_t m = 5, n = 40, k = 96;  // 3840 weights: 60 blocks, crossing rows
  torch::manual_seed(7);
  const auto w = torch::randn({n, k}) * torch::linspace(0.02, 2, k);
  const auto a = torch::randn({m, k});
  const auto q = nf4_quantize(w);
  const auto scales = nf4_scales(q).contiguous();
  auto vec = [](const torch::Tensor& t) {
    auto c = t.contiguous().to(torch::kFloat32);
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  std::vector<int> packed(q.packed.data_ptr<uint8_t>(), q.packed.data_ptr<uint8_t>() + q.packed.numel());
  nlohmann::json j{{"M", m}, {"N", n}, {"K", k}, {"block", q.block}, {"W", vec(w)}, {"A", vec(a)},
                   {"packed", packed}, {"absmax", vec(scales)}};
  std::ofstream(out) << j.dump() << "\n";
}

TEST(Quant, Nf4LinearForwardAndBackward) {
  torch::manual_seed(8);
  Linear lin(96, 40, true);
  {
    torch::NoGradGuard ng;
    lin->weight.normal_(0, 0.1);
    lin->bias.normal_(0, 0.1);
  }
  const auto w = lin->weight.detach().clone();
  lin->set_nf4(nf4_quantize(w));
  EXPECT_EQ(lin->weight.numel(), 0);
  EXPECT_EQ(lin->in_features(), 96);
  EXPECT_EQ(lin->out_features(), 40);
  lin->add_lora(4, 2.0, 0.0);
  {
    torch::NoGradGuard ng;
    lin->lora_A->weight.normal_(0, 0.1);
    lin->lora_B->weight.normal_(0, 0.1);
  }
  const auto wq = nf4_dequantize(*lin->nf4, torch::kFloat32);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    auto x = torch::randn({3, 7, 96}).to(dtype).requires_grad_(true);
    auto y = lin->forward(x);
    ASSERT_EQ(y.scalar_type(), dtype);
    auto x2 = x.detach().clone().requires_grad_(true);
    auto a2 = lin->lora_A->weight.detach().clone().requires_grad_(true);
    // the LoRA branch: x A^T in float32, its product with B in the activations' dtype
    auto y2 = (torch::nn::functional::linear(x2, wq.to(dtype), lin->bias.to(dtype)).to(torch::kFloat32) +
               torch::matmul(torch::matmul(x2.to(torch::kFloat32), a2.t()).to(dtype),
                             lin->lora_B->weight.detach().to(dtype).t())
                       .to(torch::kFloat32) * 2.0)
                  .to(dtype);
    const double tol = dtype == torch::kFloat32 ? 1e-5 : 2e-2;
    EXPECT_LT((y.to(torch::kFloat32) - y2.to(torch::kFloat32)).abs().max().item<double>(), tol);
    const auto g = torch::randn_like(y);
    y.backward(g);
    y2.backward(g);
    EXPECT_LT((x.grad().to(torch::kFloat32) - x2.grad().to(torch::kFloat32)).abs().max().item<double>(), tol * 4);
    EXPECT_LT((lin->lora_A->weight.grad() - a2.grad()).abs().max().item<double>(), tol * 10);
    EXPECT_FALSE(lin->weight.grad().defined());
    lin->lora_A->weight.mutable_grad() = torch::Tensor();
    lin->lora_B->weight.mutable_grad() = torch::Tensor();
  }
  EXPECT_THROW(lin->merge(), std::invalid_argument);
}

// A tile of the weight is the same values as the whole weight dequantized: rows and columns at odd
// offsets (the low nibble first), quantization blocks that straddle rows (100 columns, blocks of 64).
TEST(Quant, Nf4TileIsTheSameSliceOfTheWholeWeight) {
  torch::manual_seed(21);
  const auto q = nf4_quantize(torch::randn({37, 100}));
  const auto scales = nf4_scales(q).contiguous();
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto whole = nf4_dequantize(q, dtype);
    auto out = torch::empty({37 * 100}, torch::TensorOptions().dtype(dtype));
    for (const auto& [r0, rows, c0, cols] : std::vector<std::array<int64_t, 4>>{
             {0, 37, 0, 100}, {3, 5, 7, 33}, {36, 1, 99, 1}, {0, 37, 1, 64}, {10, 20, 0, 1}}) {
      const auto tile = nf4_dequantize_tile_into(q, scales, r0, rows, c0, cols, out);
      EXPECT_TRUE(torch::equal(tile, whole.slice(0, r0, r0 + rows).slice(1, c0, c0 + cols)))
          << r0 << " " << rows << " " << c0 << " " << cols;
    }
    EXPECT_THROW(nf4_dequantize_tile_into(q, scales, 30, 8, 0, 10, out), std::invalid_argument);
  }
}

// A weight over the CPU product's 4 MiB tile is multiplied a tile at a time (rows of W forward,
// columns of W for the input's gradient): output and input gradient as the product with the whole
// dequantized weight (float32: to summation order; bf16: no worse than that product's own rounding).
TEST(Quant, Nf4ProductByTilesEqualsTheWholeWeightProduct) {
  torch::manual_seed(22);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const int64_t out = 1500, in = dtype == torch::kFloat32 ? 1100 : 2100;  // 6.3 MiB / 6.0 MiB: 2 tiles each way
    Linear lin(in, out, false);
    lin->set_nf4(nf4_quantize(torch::randn({out, in}) * 0.05));
    const auto w64 = nf4_dequantize(*lin->nf4, torch::kFloat64);
    auto x = (torch::randn({2, 9, in})).to(dtype).requires_grad_(true);
    auto y = lin->forward(x);
    const auto g = torch::randn_like(y);
    y.backward(g);
    // Reference in float64 from the same rounded inputs; dense dtype products for the bf16 bound.
    const auto x64 = x.detach().to(torch::kFloat64), g64 = g.to(torch::kFloat64);
    const auto y_ref = torch::matmul(x64, w64.t()), gx_ref = torch::matmul(g64, w64);
    const auto wd = w64.to(dtype);
    const auto y_dense = torch::matmul(x.detach(), wd.t()), gx_dense = torch::matmul(g, wd);
    const auto err = [](const torch::Tensor& a, const torch::Tensor& ref) {
      return ((a.to(torch::kFloat64) - ref).abs().max() / ref.abs().max()).item<double>();
    };
    if (dtype == torch::kFloat32) {
      EXPECT_LT(err(y, y_ref), 1e-6);
      EXPECT_LT(err(x.grad(), gx_ref), 1e-6);
    } else {
      EXPECT_LE(err(y, y_ref), 2 * err(y_dense, y_ref) + 1e-3);
      EXPECT_LE(err(x.grad(), gx_ref), 2 * err(gx_dense, gx_ref) + 1e-3);
      EXPECT_LT(err(y, y_ref), 1e-2);
    }
    // A tile that misses a column or a row of the weight is caught: an untouched output column.
    EXPECT_GT(y.detach().select(-1, out - 1).abs().sum().item<double>(), 0);
    EXPECT_GT(x.grad().select(-1, in - 1).abs().sum().item<double>(), 0);
    // With a LoRA adapter its branch is added into the tiled product's output in place (that
    // output must not be a view of the custom function's).
    lin->add_lora(4, 2.0, 0.0);
    {
      torch::NoGradGuard ng;
      lin->lora_A->weight.normal_(0, 0.05);
      lin->lora_B->weight.normal_(0, 0.05);
    }
    auto xl = x.detach().clone().requires_grad_(true);
    auto yl = lin->forward(xl);
    yl.backward(g);
    const auto a64 = lin->lora_A->weight.detach().to(torch::kFloat64), b64 = lin->lora_B->weight.detach().to(torch::kFloat64);
    const auto yl_ref = y_ref + 2.0 * torch::matmul(torch::matmul(x64, a64.t()), b64.t());
    EXPECT_LT(err(yl, yl_ref), dtype == torch::kFloat32 ? 1e-6 : 1e-2);
    EXPECT_GT(lin->lora_B->weight.grad().abs().sum().item<double>(), 0);
  }
}
