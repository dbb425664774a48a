// AdamW update; see adamw.h. Follows torch.optim.AdamW (single-tensor path):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#include "src/train/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "src/error.h"

namespace ringtune {

struct AdamW::Slot {
  std::string name;
  torch::Tensor param, m, v;
  bool decay;
};

bool no_weight_decay(const std::string& name) {
  return name.find("norm") != std::string::npos || name.find("bias") != std::string::npos;
}

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : options_(options) {
  for (auto& [name, p] : params) {
    auto opts = p.options().dtype(torch::kFloat32).requires_grad(false);
    slots_.push_back({name, p, torch::zeros(p.sizes(), opts), torch::zeros(p.sizes(), opts),
                      !no_weight_decay(name)});
  }
}

AdamW::~AdamW() = default;

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    auto gf = g.to(torch::kFloat32);
    if (s.decay && options_.weight_decay != 0.0) s.param.mul_(1.0 - lr * options_.weight_decay);
    s.m.mul_(options_.beta1).add_(gf, 1.0 - options_.beta1);
    s.v.mul_(options_.beta2).addcmul_(gf, gf, 1.0 - options_.beta2);
    auto denom = (s.v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
    if (s.param.scalar_type() == torch::kFloat32) {
      s.param.addcdiv_(s.m, denom, -lr / bc1);
    } else {  // low-precision parameters: update in float32, round once
      auto pf = s.param.to(torch::kFloat32).addcdiv_(s.m, denom, -lr / bc1);
      s.param.copy_(pf);
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& s : slots_) {
    out.emplace_back(s.name + ".exp_avg", s.m);
    out.emplace_back(s.name + ".exp_avg_sq", s.v);
  }
  return out;
}

}  // namespace ringtune

namespace ringtune {

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& moments) {
  std::map<std::string, at::Tensor> by_name(moments.begin(), moments.end());
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &s.m}, {".exp_avg_sq", &s.v}}) {
      auto it = by_name.find(s.name + suffix);
      if (it == by_name.end()) throw InputError("optimizer state for " + s.name + suffix + " is missing");
      if (it->second.sizes() != dst->sizes())
        throw InputError("optimizer state " + s.name + suffix + " has shape " + c10::str(it->second.sizes()) +
                         ", expected " + c10::str(dst->sizes()));
      dst->copy_(it->second);
    }
  }
}

}  // namespace ringtune
