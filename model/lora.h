// LoRA with PEFT's semantics: which Linear layers of a Llama-family model get low-rank adapters,
// how those adapters are scaled and initialised, and which parameters stay trainable. The adapter
// itself (lora_A / lora_B, forward, merge) lives in LinearImpl (model/llama.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/llama.h"

namespace ringtune {

// PEFT's LoraConfig fields that matter for a Llama-family decoder.
struct LoraOptions {
  int64_t r = 8;
  double lora_alpha = 16.0;
  double lora_dropout = 0.05;  // on the adapter input only, in training mode; [0, 1)
  // Names of Linear modules (matched against the end of the module name, as PEFT does for a list),
  // or "all-linear": every projection of attention and MLP, never lm_head. Also, as PEFT,
  // "embed_tokens" (an nn.Embedding adapter: lora_embedding_A [r, vocab], lora_embedding_B
  // [dim, r]) and "lm_head" (with tied embeddings an output-side adapter of its own, so targeting
  // both on a tied model gives two independent adapters on the one shared matrix).
  std::vector<std::string> target_modules{"q_proj", "v_proj"};
  bool use_rslora = false;                 // scale alpha / sqrt(r) instead of alpha / r
  std::string init_lora_weights = "true";  // "true" | "gaussian" | "false" (see apply_lora)
  // Modules trained in full besides the adapters: "embed_tokens", "lm_head". With tied word
  // embeddings lm_head *is* embed_tokens, so "lm_head" makes the shared matrix trainable.
  std::vector<std::string> modules_to_save;
  std::string bias = "none";  // PEFT's bias: "none" | "all" (every bias) | "lora_only" (adapted)
  uint64_t seed = 42;         // adapter initialisation; the same seed gives the same adapters
};

// The Linear names that target_modules may hold (besides "all-linear").
const std::vector<std::string>& lora_target_names();

// True for the parameter names of adapter factors: "...lora_A.weight", "...lora_B.weight",
// "embed_tokens.lora_embedding_A" / "_B" (with or without PEFT's prefix).
bool is_lora_parameter(const std::string& name);

// PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
double lora_scale(const LoraOptions& options);

// Throws std::invalid_argument naming the field and the value when `options` cannot be applied.
void validate_lora_options(const LoraOptions& options);

// Attaches an adapter to every Linear whose module name ends with a target, initialises it
// (init_lora_weights "true": A Kaiming-uniform as nn.Linear's default, i.e. U(-1/sqrt(in),
// 1/sqrt(in)), B zero; "gaussian": A ~ N(0, 1/r), B zero; "false": A and B both nn.Linear's default,
// so the model changes at once — for tests), drawing from a generator seeded with options.seed in
// module order. Then freezes every base parameter (requires_grad false: no gradient memory) and
// leaves trainable only the adapters, modules_to_save and the biases that `bias` names.
// Returns the adapted module names ("model.layers.0.self_attn.q_proj", ...) in module order.
// Validates everything before touching the model; throws std::invalid_argument (an unknown target
// is named with the list of valid ones) and leaves the model unchanged.
std::vector<std::string> apply_lora(LlamaForCausalLM& model, const LoraOptions& options);

// The tensors apply_lora would leave trainable on a model of config `c` (names as
// named_parameters() gives them, shapes), computed from the config alone, without building the
// model: adapters, modules_to_save and the biases `bias` names. With `options` nullopt (full
// fine-tuning) every parameter. For the memory estimate (src/train/memory_estimate.h); a test holds
// it to apply_lora on a built model.
std::vector<std::pair<std::string, std::vector<int64_t>>> trainable_shapes(const LlamaConfig& c,
                                                                          const std::optional<LoraOptions>& options);

// merge() / unmerge() on every adapter (the embedding's included); returns how many there are.
// merge_lora throws std::invalid_argument on a tied model with an embed_tokens or lm_head adapter
// (folding it into the shared matrix would change both ends).
int64_t merge_lora(LlamaForCausalLM& model);
// Sets the dropout probability of every attached adapter (e.g. to continue training an adapter
// with another lora_dropout). Returns the number of adapters.
int64_t set_lora_dropout(LlamaForCausalLM& model, double dropout);
int64_t unmerge_lora(LlamaForCausalLM& model);

}  // namespace ringtune
