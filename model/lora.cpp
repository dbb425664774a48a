// LoRA with PEFT's semantics: option checks, target selection, seeded adapter initialisation,
// freezing of the base model, and merging of all adapters at once.
#include "model/lora.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Options

namespace {

const std::vector<std::string>& modules_to_save_names() {
  static const std::vector<std::string> names{"embed_tokens", "lm_head"};
  return names;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// PEFT's list matching: the module name equals the target or ends with "." + target.
bool name_matches(const std::string& module_name, const std::set<std::string>& targets) {
  for (const auto& t : targets) {
    if (module_name == t || ends_with(module_name, "." + t)) return true;
  }
  return false;
}

std::set<std::string> expanded_targets(const std::vector<std::string>& target_modules) {
  std::set<std::string> out;
  for (const auto& t : target_modules) {
    if (t == "all-linear") {
      out.insert(lora_target_names().begin(), lora_target_names().end());
    } else {
      out.insert(t);
    }
  }
  return out;
}

}  // namespace

const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> names{"q_proj",    "k_proj", "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
  return names;
}

double lora_scale(const LoraOptions& o) {
  if (o.r <= 0) throw std::invalid_argument("lora r = " + std::to_string(o.r) + ": must be > 0");
  const double r = static_cast<double>(o.r);
  return o.use_rslora ? o.lora_alpha / std::sqrt(r) : o.lora_alpha / r;
}

void validate_lora_options(const LoraOptions& o) {
  if (o.r <= 0) throw std::invalid_argument("lora r = " + std::to_string(o.r) + ": must be > 0");
  if (!(o.lora_dropout >= 0.0 && o.lora_dropout < 1.0)) {
    throw std::invalid_argument("lora_dropout = " + std::to_string(o.lora_dropout) +
                                ": must be in [0, 1)");
  }
  if (!std::isfinite(o.lora_alpha)) throw std::invalid_argument("lora_alpha must be finite");
  if (o.target_modules.empty()) {
    throw std::invalid_argument("target_modules is empty: name at least one of " +
                                join(lora_target_names()) + " (or all-linear)");
  }
  for (const auto& t : o.target_modules) {
    if (t == "all-linear" || contains(lora_target_names(), t)) continue;
    std::string hint = t == "lm_head" ? " (lm_head is never adapted, as in PEFT; to train it, "
                                        "list it in modules_to_save)"
                                      : "";
    throw std::invalid_argument("target_modules: unknown module \"" + t + "\"" + hint +
                                "; valid: " + join(lora_target_names()) + ", all-linear");
  }
  if (o.init_lora_weights != "true" && o.init_lora_weights != "gaussian" &&
      o.init_lora_weights != "false") {
    throw std::invalid_argument("init_lora_weights = \"" + o.init_lora_weights +
                                "\": must be true, gaussian or false");
  }
  for (const auto& m : o.modules_to_save) {
    if (!contains(modules_to_save_names(), m)) {
      throw std::invalid_argument("modules_to_save: unknown module \"" + m +
                                  "\"; valid: " + join(modules_to_save_names()));
    }
  }
  if (o.bias != "none" && o.bias != "all" && o.bias != "lora_only") {
    throw std::invalid_argument("lora bias = \"" + o.bias + "\": must be none, all or lora_only");
  }
}

// ---------------------------------------------------------------------------------------------
// Attaching and initialising adapters

namespace {

// nn.Linear's default weight init, kaiming_uniform_(a = sqrt(5)): gain sqrt(2 / (1 + 5)), so the
// bound sqrt(3) * gain / sqrt(fan_in) is 1 / sqrt(fan_in).
void kaiming_uniform_sqrt5(torch::Tensor& w, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(w.size(1)));
  auto cpu = torch::empty(w.sizes(), torch::TensorOptions().dtype(torch::kFloat32));
  cpu.uniform_(-bound, bound, gen);
  w.copy_(cpu);
}

void normal_init(torch::Tensor& w, double std, at::Generator& gen) {
  auto cpu = torch::empty(w.sizes(), torch::TensorOptions().dtype(torch::kFloat32));
  cpu.normal_(0.0, std, gen);
  w.copy_(cpu);
}

void init_adapter(LinearImpl& lin, const LoraOptions& o, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  auto& a = lin.lora_A->weight;
  auto& b = lin.lora_B->weight;
  if (o.init_lora_weights == "true") {
    kaiming_uniform_sqrt5(a, gen);
    b.zero_();
  } else if (o.init_lora_weights == "gaussian") {
    normal_init(a, 1.0 / static_cast<double>(o.r), gen);
    b.zero_();
  } else {  // "false": both keep nn.Linear's default
    kaiming_uniform_sqrt5(a, gen);
    kaiming_uniform_sqrt5(b, gen);
  }
}

// (name, Linear) for every Linear of the model that is not itself an adapter factor.
std::vector<std::pair<std::string, LinearImpl*>> base_linears(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& item : model->named_modules()) {
    auto* lin = item.value()->as<LinearImpl>();
    const auto& name = item.key();
    if (!lin || ends_with(name, ".lora_A") || ends_with(name, ".lora_B")) continue;
    out.emplace_back(name, lin);
  }
  return out;
}

}  // namespace

std::vector<std::string> apply_lora(LlamaForCausalLM& model, const LoraOptions& o) {
  validate_lora_options(o);
  const auto targets = expanded_targets(o.target_modules);
  const double scale = lora_scale(o);

  std::vector<std::pair<std::string, LinearImpl*>> chosen;
  for (const auto& [name, lin] : base_linears(model)) {
    if (!name_matches(name, targets)) continue;
    if (lin->has_lora()) {
      throw std::invalid_argument("apply_lora: " + name + " already has a LoRA adapter");
    }
    chosen.emplace_back(name, lin);
  }
  if (chosen.empty()) {
    throw std::invalid_argument("apply_lora: target_modules (" + join(o.target_modules) +
                                ") match no Linear layer of the model");
  }

  // Freeze the base first: the adapters registered below are the only new trainable tensors.
  for (auto& p : model->parameters()) p.set_requires_grad(false);

  auto gen = at::detail::createCPUGenerator(o.seed);
  std::vector<std::string> adapted;
  for (auto& [name, lin] : chosen) {
    lin->add_lora(o.r, scale, o.lora_dropout);
    init_adapter(*lin, o, gen);
    if (o.bias == "lora_only" && lin->bias.defined()) lin->bias.set_requires_grad(true);
    adapted.push_back(name);
  }

  if (o.bias == "all") {
    for (const auto& [name, lin] : base_linears(model)) {
      if (lin->bias.defined()) lin->bias.set_requires_grad(true);
    }
  }
  for (const auto& m : o.modules_to_save) {
    if (m == "embed_tokens" || model->config().tie_word_embeddings) {
      model->model->embed_tokens->weight.set_requires_grad(true);  // tied: lm_head is this matrix
    } else {
      model->lm_head->weight.set_requires_grad(true);
    }
  }
  return adapted;
}

int64_t merge_lora(LlamaForCausalLM& model) {
  int64_t n = 0;
  for (const auto& [name, lin] : base_linears(model)) {
    if (lin->has_lora()) {
      lin->merge();
      ++n;
    }
  }
  return n;
}

int64_t set_lora_dropout(LlamaForCausalLM& model, double dropout) {
  if (!(dropout >= 0.0 && dropout < 1.0)) throw std::invalid_argument("lora_dropout must be in [0, 1)");
  int64_t n = 0;
  for (const auto& [name, lin] : base_linears(model)) {
    if (lin->has_lora()) {
      lin->lora_dropout = dropout;
      ++n;
    }
  }
  return n;
}

int64_t unmerge_lora(LlamaForCausalLM& model) {
  int64_t n = 0;
  for (const auto& [name, lin] : base_linears(model)) {
    if (lin->has_lora()) {
      lin->unmerge();
      ++n;
    }
  }
  return n;
}

}  // namespace ringtune
