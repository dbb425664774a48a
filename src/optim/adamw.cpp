// AdamW update over a flat range; see adamw.h. Follows torch.optim.AdamW (single-tensor path):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Every operation is elementwise, so updating one flat range or a tensor at a time gives the
// same numbers: the split between ranks does not change the result.
#include "src/optim/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "distributed/shard_map.h"
#include "src/error.h"

namespace ringtune {

struct AdamW::Impl {
  std::map<std::string, torch::Tensor> params;
  std::vector<ShardPiece> pieces;                  // of the owned range, flat_offset made local
  std::vector<std::pair<int64_t, int64_t>> decay;  // (local offset, numel) of decayed pieces
  torch::Tensor m, v, master;

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
  const int64_t begin = map.begin(rank);
  for (auto piece : map.pieces(rank)) {
    piece.flat_offset -= begin;
    if (!no_weight_decay(piece.name)) impl_->decay.emplace_back(piece.flat_offset, piece.numel);
    impl_->pieces.push_back(piece);
  }
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  if (!params.empty()) opts = opts.device(params[0].second.device());
  impl_->m = torch::zeros({map.count(rank)}, opts);
  impl_->v = torch::zeros({map.count(rank)}, opts);
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
  m.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
  v.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
  auto denom = (v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
  values.addcdiv_(m, denom, -lr / bc1);
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

std::vector<std::pair<std::string, at::Tensor>> AdamW::named_state(const at::Tensor& full_m,
                                                                   const at::Tensor& full_v) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : map_->tensors()) {
    const auto shape = impl_->params.at(t.name).sizes();
    out.emplace_back(t.name + ".exp_avg", full_m.narrow(0, t.flat_offset, t.numel).view(shape).clone());
    out.emplace_back(t.name + ".exp_avg_sq", full_v.narrow(0, t.flat_offset, t.numel).view(shape).clone());
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  if (range_size() != map_->total()) throw Error("AdamW::state needs the whole range (gather, then named_state)");
  return named_state(impl_->m, impl_->v);
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& moments) {
  const std::map<std::string, at::Tensor> by_name(moments.begin(), moments.end());
  torch::NoGradGuard no_grad;
  impl_->load_range(by_name, ".exp_avg", impl_->m, "optimizer state");
  impl_->load_range(by_name, ".exp_avg_sq", impl_->v, "optimizer state");
}

void AdamW::load_master(const std::vector<std::pair<std::string, at::Tensor>>& values) {
  const std::map<std::string, at::Tensor> by_name(values.begin(), values.end());
  torch::NoGradGuard no_grad;
  impl_->load_range(by_name, "", impl_->master, "master weights");
}

}  // namespace ringtune
