// AdamW update over a flat range; see adamw.h. Follows torch.optim.AdamW (single-tensor path):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Every operation is elementwise, so updating one flat range or a tensor at a time gives the
// same numbers: the split between ranks does not change the result.
#include "src/optim/adamw.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "distributed/shard_map.h"
#include "model/quant.h"
#include "src/error.h"

namespace ringtune {

namespace {

constexpr int64_t kBlock = AdamWOptions::kBlock;
int64_t blocks_of(int64_t n) { return (n + kBlock - 1) / kBlock; }

// "<name>.exp_avg" -> 8-bit state of tensors at least min_8bit_size big (with eight_bit).
bool quantized_state(const AdamWOptions& o, int64_t tensor_numel) {
  return o.eight_bit && tensor_numel >= o.min_8bit_size;
}

// Length in the side buffers of a piece of a tensor: its moments, or one absmax per block.
int64_t side_length(const AdamWOptions& o, int64_t tensor_numel, int64_t piece_numel) {
  return quantized_state(o, tensor_numel) ? blocks_of(piece_numel) : piece_numel;
}

}  // namespace

struct AdamW::Impl {
  std::map<std::string, torch::Tensor> params;
  std::map<std::string, int64_t> numel;            // whole tensors
  std::vector<ShardPiece> pieces;                  // of the owned range, flat_offset made local
  std::vector<int64_t> side;                       // per piece: its offset in m and v
  std::vector<std::pair<int64_t, int64_t>> decay;  // (local offset, numel) of decayed pieces
  torch::Tensor m, v, master;                      // m, v: the side buffers
  torch::Tensor qm, qv;                            // eight_bit: codes over the range

  // Copies the owned range's part of each named whole tensor (every one must be there with its
  // parameter's shape) into `dst`; `suffix` is appended to the parameter names.
  void load_range(const std::map<std::string, torch::Tensor>& by_name, const std::string& suffix,
                  torch::Tensor& dst, const char* what) const {
    for (const auto& [name, p] : params) {
      auto it = by_name.find(name + suffix);
      if (it == by_name.end()) throw InputError(std::string(what) + " for " + name + suffix + " is missing");
      if (it->second.sizes() != p.sizes())
        throw InputError(std::string(what) + " " + name + suffix + " has shape " + c10::str(it->second.sizes()) +
                         ", expected " + c10::str(p.sizes()));
    }
    for (const auto& pc : pieces)
      dst.narrow(0, pc.flat_offset, pc.numel)
          .copy_(by_name.at(pc.name + suffix).reshape({-1}).narrow(0, pc.tensor_offset, pc.numel));
  }
};

bool no_weight_decay(const std::string& name) {
  return name.find("norm") != std::string::npos || name.find("bias") != std::string::npos;
}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : AdamW(params, options, ShardMap(named_numels(params), 1), 0) {}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options, const ShardMap& map,
             int rank)
    : impl_(std::make_unique<Impl>()), map_(std::make_unique<ShardMap>(map)), rank_(rank), options_(options) {
  const auto& tensors = map.tensors();
  if (tensors.size() != params.size()) throw Error("AdamW: the shard map does not list the parameters");
  for (size_t i = 0; i < params.size(); ++i) {
    if (tensors[i].name != params[i].first || tensors[i].numel != params[i].second.numel())
      throw Error("AdamW: shard map entry " + tensors[i].name + " does not match parameter " + params[i].first);
    impl_->params[params[i].first] = params[i].second;
  }
  for (const auto& t : tensors) impl_->numel[t.name] = t.numel;
  const int64_t begin = map.begin(rank);
  int64_t side = 0;
  for (auto piece : map.pieces(rank)) {
    piece.flat_offset -= begin;
    if (!no_weight_decay(piece.name)) impl_->decay.emplace_back(piece.flat_offset, piece.numel);
    const int64_t whole = impl_->numel.at(piece.name);
    if (quantized_state(options_, whole) && piece.tensor_offset % kBlock != 0)
      throw Error("AdamW: 8-bit state of " + piece.name + " split inside a block (the shard map needs align " +
                  std::to_string(kBlock) + ")");
    impl_->pieces.push_back(piece);
    impl_->side.push_back(side);
    side += side_length(options_, whole, piece.numel);
  }
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  if (!params.empty()) opts = opts.device(params[0].second.device());
  impl_->m = torch::zeros({side}, opts);
  impl_->v = torch::zeros({side}, opts);
  if (options_.eight_bit) {
    if (!opts.device().is_cpu()) throw InputError("optimizer adamw_8bit runs on the CPU only in this build");
    impl_->qm = torch::zeros({map.count(rank)}, opts.dtype(torch::kUInt8));
    impl_->qv = torch::zeros({map.count(rank)}, opts.dtype(torch::kUInt8));
  }
  torch::NoGradGuard no_grad;
  impl_->master = torch::empty({map.count(rank)}, opts);
  for (const auto& pc : impl_->pieces)
    impl_->master.narrow(0, pc.flat_offset, pc.numel)
        .copy_(impl_->params.at(pc.name).detach().reshape({-1}).narrow(0, pc.tensor_offset, pc.numel));
}

AdamW::~AdamW() = default;

int64_t AdamW::range_begin() const { return map_->begin(rank_); }
int64_t AdamW::range_size() const { return map_->count(rank_); }
const at::Tensor& AdamW::exp_avg() const { return impl_->m; }
const at::Tensor& AdamW::exp_avg_sq() const { return impl_->v; }
const at::Tensor& AdamW::master() const { return impl_->master; }
const at::Tensor& AdamW::codes_avg() const { return impl_->qm; }
const at::Tensor& AdamW::codes_avg_sq() const { return impl_->qv; }

std::vector<int64_t> AdamW::side_counts() const {
  std::vector<int64_t> out;
  for (int r = 0; r < map_->world(); ++r) {
    int64_t n = 0;
    for (const auto& pc : map_->pieces(r)) n += side_length(options_, impl_->numel.at(pc.name), pc.numel);
    out.push_back(n);
  }
  return out;
}

int64_t AdamW::state_bytes() const {
  int64_t b = (impl_->m.numel() + impl_->v.numel()) * 4;
  if (impl_->qm.defined()) b += impl_->qm.numel() + impl_->qv.numel();
  return b;
}

void AdamW::step_range(double lr, const at::Tensor& grad) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  auto& m = impl_->m;
  auto& v = impl_->v;
  auto& values = impl_->master;
  if (options_.weight_decay != 0.0)
    for (const auto& [off, n] : impl_->decay) values.narrow(0, off, n).mul_(1.0 - lr * options_.weight_decay);
  auto update = [&](torch::Tensor m, torch::Tensor v, const torch::Tensor& g, torch::Tensor p) {
    m.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
    p.addcdiv_(m, denom, -lr / bc1);
  };
  if (!options_.eight_bit) {
    update(m, v, grad, values);
    return;
  }
  // Coefficients rounded to float32 from double, and the operations in the order of the float32
  // path's libtorch kernels (mul_ then add_ with alpha as one fused multiply-add; addcmul_ as
  // (value * g) * g; addcdiv_ as (value * m) / denom), so float32 and 8-bit state differ by
  // the quantization alone.
  const float b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
  const float one_minus_b1 = static_cast<float>(1.0 - options_.beta1);
  const float one_minus_b2 = static_cast<float>(1.0 - options_.beta2);
  const float eps = static_cast<float>(options_.eps), neg_step = static_cast<float>(-lr / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float* code1 = dynamic_map(true).data();
  const float* code2 = dynamic_map(false).data();
  const auto g_all = grad.contiguous();
  for (size_t i = 0; i < impl_->pieces.size(); ++i) {
    const ShardPiece& pc = impl_->pieces[i];
    const int64_t so = impl_->side[i];
    if (!quantized_state(options_, impl_->numel.at(pc.name))) {
      update(m.narrow(0, so, pc.numel), v.narrow(0, so, pc.numel), g_all.narrow(0, pc.flat_offset, pc.numel),
             values.narrow(0, pc.flat_offset, pc.numel));
      continue;
    }
    // bitsandbytes's blockwise 8-bit Adam: per block, dequantize, update in float32, requantize
    const float* g = g_all.data_ptr<float>() + pc.flat_offset;
    float* p = values.data_ptr<float>() + pc.flat_offset;
    uint8_t* c1 = impl_->qm.data_ptr<uint8_t>() + pc.flat_offset;
    uint8_t* c2 = impl_->qv.data_ptr<uint8_t>() + pc.flat_offset;
    float* a1 = m.data_ptr<float>() + so;
    float* a2 = v.data_ptr<float>() + so;
    const int64_t n = pc.numel;
    at::parallel_for(0, blocks_of(n), 8, [&](int64_t k0, int64_t k1) {
      float s1[kBlock], s2[kBlock];
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t lo = k * kBlock, len = std::min(kBlock, n - lo);
        for (int64_t j = 0; j < len; ++j) {
          const float gj = g[lo + j];
          float x1 = code1[c1[lo + j]] * a1[k], x2 = code2[c2[lo + j]] * a2[k];
          x1 = std::fma(gj, one_minus_b1, x1 * b1);
          x2 = x2 * b2 + (one_minus_b2 * gj) * gj;
          const float denom = std::sqrt(x2) / sqrt_bc2 + eps;
          p[lo + j] = p[lo + j] + (neg_step * x1) / denom;
          s1[j] = x1;
          s2[j] = x2;
        }
        // this block re-quantized with its new absmax (one block: runs inline)
        quantize_blockwise8(s1, len, kBlock, code1, c1 + lo, a1 + k);
        quantize_blockwise8(s2, len, kBlock, code2, c2 + lo, a2 + k);
      }
    });
  }
}

void AdamW::write_all(const at::Tensor& full) {
  torch::NoGradGuard no_grad;
  for (const auto& t : map_->tensors()) {
    auto& p = impl_->params.at(t.name);
    p.copy_(full.narrow(0, t.flat_offset, t.numel).view(p.sizes()));
  }
}

void AdamW::step(double lr) {
  if (range_size() != map_->total()) throw Error("AdamW::step needs the whole parameter range (use step_range)");
  auto grad = torch::zeros({range_size()}, impl_->m.options());
  for (const auto& pc : impl_->pieces) {
    const auto& g = impl_->params.at(pc.name).grad();
    if (g.defined()) grad.narrow(0, pc.flat_offset, pc.numel).copy_(g.reshape({-1}).narrow(0, pc.tensor_offset, pc.numel));
  }
  step_range(lr, grad);
  write_all(impl_->master);
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::named_values(const at::Tensor& full) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : map_->tensors())
    out.emplace_back(t.name, full.narrow(0, t.flat_offset, t.numel).view(impl_->params.at(t.name).sizes()).clone());
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::named_state(const at::Tensor& full_m, const at::Tensor& full_v,
                                                                   const at::Tensor& full_qm,
                                                                   const at::Tensor& full_qv) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (!options_.eight_bit) {
    for (const auto& t : map_->tensors()) {
      const auto shape = impl_->params.at(t.name).sizes();
      out.emplace_back(t.name + ".exp_avg", full_m.narrow(0, t.flat_offset, t.numel).view(shape).clone());
      out.emplace_back(t.name + ".exp_avg_sq", full_v.narrow(0, t.flat_offset, t.numel).view(shape).clone());
    }
    return out;
  }
  // Side buffers come rank after rank; a tensor's parts are in rank order.
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> parts;  // name -> (side offset, length)
  int64_t offset = 0;
  for (int r = 0; r < map_->world(); ++r)
    for (const auto& pc : map_->pieces(r)) {
      const int64_t len = side_length(options_, impl_->numel.at(pc.name), pc.numel);
      parts[pc.name].emplace_back(offset, len);
      offset += len;
    }
  auto joined = [&](const at::Tensor& side, const std::string& name) {
    std::vector<at::Tensor> pieces;
    for (const auto& [o, n] : parts[name]) pieces.push_back(side.narrow(0, o, n));
    return pieces.empty() ? torch::zeros({0}, side.options()) : torch::cat(pieces);
  };
  for (const auto& t : map_->tensors()) {
    if (quantized_state(options_, t.numel)) {
      out.emplace_back(t.name + ".exp_avg.q8", full_qm.narrow(0, t.flat_offset, t.numel).clone());
      out.emplace_back(t.name + ".exp_avg.absmax", joined(full_m, t.name));
      out.emplace_back(t.name + ".exp_avg_sq.q8", full_qv.narrow(0, t.flat_offset, t.numel).clone());
      out.emplace_back(t.name + ".exp_avg_sq.absmax", joined(full_v, t.name));
    } else {
      const auto shape = impl_->params.at(t.name).sizes();
      out.emplace_back(t.name + ".exp_avg", joined(full_m, t.name).view(shape));
      out.emplace_back(t.name + ".exp_avg_sq", joined(full_v, t.name).view(shape));
    }
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  if (range_size() != map_->total()) throw Error("AdamW::state needs the whole range (gather, then named_state)");
  return named_state(impl_->m, impl_->v, impl_->qm, impl_->qv);
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& moments) {
  std::map<std::string, at::Tensor> by_name(moments.begin(), moments.end());
  torch::NoGradGuard no_grad;
  // 8-bit state of a tensor that now keeps float32 moments (or all of them, without eight_bit):
  // dequantized first. Checked: codes and absmax present together, with their sizes.
  for (const auto& [name, p] : impl_->params) {
    for (const char* moment : {".exp_avg", ".exp_avg_sq"}) {
      const std::string key = name + moment;
      auto q = by_name.find(key + ".q8");
      if (q == by_name.end()) continue;
      auto a = by_name.find(key + ".absmax");
      const int64_t n = p.numel();
      if (a == by_name.end()) throw InputError("optimizer state " + key + ".absmax is missing");
      if (q->second.numel() != n || a->second.numel() != blocks_of(n) || q->second.scalar_type() != torch::kUInt8)
        throw InputError("optimizer state " + key + ".q8 / .absmax: " + std::to_string(q->second.numel()) +
                         " codes and " + std::to_string(a->second.numel()) + " block scales, expected " +
                         std::to_string(n) + " and " + std::to_string(blocks_of(n)));
      if (quantized_state(options_, n)) continue;
      auto codes = q->second.contiguous();
      auto absmax = a->second.to(torch::kFloat32).contiguous();
      auto values = torch::empty({n}, torch::kFloat32);
      dequantize_blockwise8(codes.data_ptr<uint8_t>(), absmax.data_ptr<float>(), n, kBlock,
                            dynamic_map(std::string(moment) == ".exp_avg").data(), values.data_ptr<float>());
      by_name[key] = values.view(p.sizes());
    }
  }
  if (!options_.eight_bit) {
    impl_->load_range(by_name, ".exp_avg", impl_->m, "optimizer state");
    impl_->load_range(by_name, ".exp_avg_sq", impl_->v, "optimizer state");
    return;
  }
  for (size_t i = 0; i < impl_->pieces.size(); ++i) {
    const ShardPiece& pc = impl_->pieces[i];
    const int64_t whole = impl_->numel.at(pc.name), so = impl_->side[i];
    for (const bool first : {true, false}) {
      const std::string key = pc.name + (first ? ".exp_avg" : ".exp_avg_sq");
      auto& side = first ? impl_->m : impl_->v;
      auto q = by_name.find(key + ".q8");
      auto f = by_name.find(key);
      if (q == by_name.end() && f == by_name.end()) throw InputError("optimizer state for " + key + " is missing");
      if (!quantized_state(options_, whole)) {  // float32 moments (dequantized above when saved 8-bit)
        if (f->second.numel() != whole)
          throw InputError("optimizer state " + key + " has shape " + c10::str(f->second.sizes()) + ", expected " +
                           c10::str(impl_->params.at(pc.name).sizes()));
        side.narrow(0, so, pc.numel).copy_(f->second.reshape({-1}).narrow(0, pc.tensor_offset, pc.numel));
        continue;
      }
      auto& codes = first ? impl_->qm : impl_->qv;
      if (q != by_name.end()) {  // the saved codes and block scales of this piece's blocks: bitwise
        codes.narrow(0, pc.flat_offset, pc.numel).copy_(q->second.reshape({-1}).narrow(0, pc.tensor_offset, pc.numel));
        side.narrow(0, so, blocks_of(pc.numel))
            .copy_(by_name.at(key + ".absmax").reshape({-1}).narrow(0, pc.tensor_offset / kBlock, blocks_of(pc.numel)));
      } else {  // float32 moments saved by adamw: quantized now
        if (f->second.numel() != whole)
          throw InputError("optimizer state " + key + " has shape " + c10::str(f->second.sizes()) + ", expected " +
                           c10::str(impl_->params.at(pc.name).sizes()));
        auto vals = f->second.to(torch::kFloat32).reshape({-1}).narrow(0, pc.tensor_offset, pc.numel).contiguous();
        quantize_blockwise8(vals.data_ptr<float>(), pc.numel, kBlock, dynamic_map(first).data(),
                            codes.data_ptr<uint8_t>() + pc.flat_offset, side.data_ptr<float>() + so);
      }
    }
  }
}

void AdamW::load_master(const std::vector<std::pair<std::string, at::Tensor>>& values) {
  const std::map<std::string, at::Tensor> by_name(values.begin(), values.end());
  torch::NoGradGuard no_grad;
  impl_->load_range(by_name, "", impl_->master, "master weights");
}

}  // namespace ringtune
