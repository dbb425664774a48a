// LoRA with PEFT's semantics: option checks, target selection, seeded adapter initialisation,
// freezing of the base model, and merging of all adapters at once.
#include "model/lora.h"

#include "model/parameter_shapes.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
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

bool is_lora_parameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos ||
         name.find(".lora_embedding_A") != std::string::npos || name.find(".lora_embedding_B") != std::string::npos;
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
    if (t == "all-linear" || contains(lora_target_names(), t) || contains(modules_to_save_names(), t)) continue;
    throw std::invalid_argument("target_modules: unknown module \"" + t + "\"; valid: " + join(lora_target_names()) +
                                ", embed_tokens, lm_head, all-linear");
  }
  for (const auto& m : o.modules_to_save)
    if (contains(o.target_modules, m))
      throw std::invalid_argument("\"" + m + "\" is both a LoRA target (target_modules) and trained in full "
                                  "(modules_to_save); choose one");
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

  const bool tied = model->config().tie_word_embeddings;
  const bool embed_target = targets.count("embed_tokens") > 0;
  const bool tied_head_target = tied && targets.count("lm_head") > 0;
  if (embed_target && model->model->has_embedding_lora())
    throw std::invalid_argument("apply_lora: embed_tokens already has a LoRA adapter");
  if (tied_head_target && model->tied_head_lora)
    throw std::invalid_argument("apply_lora: lm_head already has a LoRA adapter");
  std::vector<std::pair<std::string, LinearImpl*>> chosen;
  for (const auto& [name, lin] : base_linears(model)) {
    if (!name_matches(name, targets)) continue;
    if (lin->has_lora()) {
      throw std::invalid_argument("apply_lora: " + name + " already has a LoRA adapter");
    }
    chosen.emplace_back(name, lin);
  }
  if (chosen.empty() && !embed_target && !tied_head_target) {
    throw std::invalid_argument("apply_lora: target_modules (" + join(o.target_modules) +
                                ") match no Linear layer of the model");
  }

  // Freeze the base first: the adapters registered below are the only new trainable tensors.
  for (auto& p : model->parameters()) p.set_requires_grad(false);

  auto gen = at::detail::createCPUGenerator(o.seed);
  std::vector<std::string> adapted;
  if (embed_target) {  // module order: the embedding comes first
    // PEFT's lora.Embedding: A zero and B ~ N(0, 1) (the reverse of Linear's) for true and
    // gaussian; false leaves both N(0, 1).
    model->model->add_embedding_lora(o.r, scale);
    torch::NoGradGuard no_grad;
    auto& a = model->model->embed_lora_A;
    auto& b = model->model->embed_lora_B;
    if (o.init_lora_weights == "false") normal_init(a, 1.0, gen);
    normal_init(b, 1.0, gen);
    adapted.push_back("model.embed_tokens");
  }
  for (auto& [name, lin] : chosen) {
    lin->add_lora(o.r, scale, o.lora_dropout);
    init_adapter(*lin, o, gen);
    if (o.bias == "lora_only" && lin->bias.defined()) lin->bias.set_requires_grad(true);
    adapted.push_back(name);
  }

  if (tied_head_target) {  // tied: an output-side adapter of its own (the embedding's is separate)
    model->add_tied_head_lora(o.r, scale, o.lora_dropout);
    auto& f = *model->tied_head_lora;
    torch::NoGradGuard no_grad;
    kaiming_uniform_sqrt5(f.lora_A->weight, gen);
    if (o.init_lora_weights == "false") kaiming_uniform_sqrt5(f.lora_B->weight, gen);
    else if (o.init_lora_weights == "gaussian") normal_init(f.lora_A->weight, 1.0 / static_cast<double>(o.r), gen);
    adapted.push_back("lm_head");
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

namespace {
// Merging an adapter of a tied model's embedding or output projection into the one shared matrix
// would change both ends.
void check_mergeable(LlamaForCausalLM& model) {
  if (model->config().tie_word_embeddings && (model->model->has_embedding_lora() || model->tied_head_lora))
    throw std::invalid_argument(
        "this model ties lm_head to embed_tokens: a LoRA adapter on either cannot be merged into the one shared "
        "matrix without changing the other end; use the PEFT adapter unmerged");
}
}  // namespace

int64_t merge_lora(LlamaForCausalLM& model) {
  check_mergeable(model);
  int64_t n = 0;
  if (model->model->has_embedding_lora()) {
    model->model->merge_embedding_lora();
    ++n;
  }
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
  if (model->tied_head_lora) {
    model->tied_head_lora->lora_dropout = dropout;
    ++n;
  }
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
  if (model->model->has_embedding_lora()) {
    model->model->unmerge_embedding_lora();
    ++n;
  }
  for (const auto& [name, lin] : base_linears(model)) {
    if (lin->has_lora()) {
      lin->unmerge();
      ++n;
    }
  }
  return n;
}

}  // namespace ringtune

namespace ringtune {

std::vector<std::pair<std::string, std::vector<int64_t>>> trainable_shapes(const LlamaConfig& c,
                                                                          const std::optional<LoraOptions>& options) {
  auto all = parameter_shapes(c);
  if (!options) return all;
  const LoraOptions& o = *options;
  const auto targets = expanded_targets(o.target_modules);
  std::map<std::string, std::vector<int64_t>> shape(all.begin(), all.end());
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t r = o.r;
  if (targets.count("embed_tokens")) {
    out.push_back({"model.embed_tokens.lora_embedding_A", {r, c.vocab_size}});
    out.push_back({"model.embed_tokens.lora_embedding_B", {c.hidden_size, r}});
  }
  // Linear modules: the 2-D ".weight" parameters other than the embedding's.
  for (const auto& [name, s] : all) {
    if (s.size() != 2 || !ends_with(name, ".weight") || name == "model.embed_tokens.weight") continue;
    const std::string module = name.substr(0, name.size() - 7);
    const bool adapted = name_matches(module, targets);
    if (adapted) {
      out.push_back({module + ".lora_A.weight", {r, s[1]}});
      out.push_back({module + ".lora_B.weight", {s[0], r}});
    }
    const auto bias = shape.find(module + ".bias");
    if (bias != shape.end() && (o.bias == "all" || (o.bias == "lora_only" && adapted))) out.push_back(*bias);
  }
  if (c.tie_word_embeddings && targets.count("lm_head")) {
    out.push_back({"lm_head.lora_A.weight", {r, c.hidden_size}});
    out.push_back({"lm_head.lora_B.weight", {c.vocab_size, r}});
  }
  std::set<std::string> saved;
  for (const auto& m : o.modules_to_save)
    saved.insert(m == "embed_tokens" || c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  for (const auto& name : saved) out.push_back({name, shape.at(name)});
  return out;
}

}  // namespace ringtune
