// Llama-family decoder forward pass: RMSNorm, RoPE, grouped-query attention with an optional KV
// cache and packed-segment masking, SwiGLU MLP, tied or untied lm_head.
#include "model/llama.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <stdexcept>

#include "model/attention_kernel.h"
#include "model/cpu_bf16.h"  // defines: widens, widened_linear, bf16_matmul
#include "model/pointwise.h"  // defines: rms_norm, swiglu
#include "model/rope.h"

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Linear, RMSNorm

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

namespace {

// On the CPU an NF4 product dequantizes its weight a tile of at most nf4_tile_bytes at a time
// into one scratch buffer per thread, reused by every layer: the full weight in bf16 would be 22
// MiB for a 1.1B model's MLP (112 MiB for an 8B one) resident for nothing but the next product,
// and a new tensor per product would fragment the heap. The forward product takes the weight by
// rows (output features), the input's gradient by columns (input features), so neither splits a
// sum and every output value is one product over the whole inner dimension, as without tiles.
// A weight within one tile is dequantized whole and multiplied as before.
torch::Tensor nf4_scratch(int64_t n, at::ScalarType dtype) {
  static thread_local torch::Tensor scratch;
  if (!scratch.defined() || scratch.scalar_type() != dtype || scratch.numel() < n) {
    scratch = torch::Tensor();  // the old one freed before the larger one is made
    scratch = torch::empty({n}, torch::TensorOptions().dtype(dtype));
  }
  return scratch;
}

// x W^T (forward) or x W (the input's gradient) with W held in NF4, x of any leading shape.
torch::Tensor nf4_product(const torch::Tensor& x, const Nf4Weight& w, bool transposed) {
  const auto dtype = x.scalar_type();
  const bool cpu = w.packed.device().is_cpu();
  const int64_t out = w.shape[0], in = w.shape[1], elem = static_cast<int64_t>(c10::elementSize(dtype));
  // Forward: tiles of whole rows of W; the gradient: tiles of whole columns.
  const int64_t across = transposed ? in : out, along = transposed ? out : in;
  const int64_t step = std::max<int64_t>(1, nf4_tile_bytes / (across * elem));
  if (!cpu || step >= along) {  // the whole weight (other devices: a new tensor each time)
    const auto full = cpu ? nf4_dequantize_into(w, nf4_scratch(w.numel(), dtype)) : nf4_dequantize(w, dtype);
    return bf16_matmul(x, transposed ? full.t() : full);
  }
  const auto scales = nf4_scales(w).contiguous();
  // Where bf16 products are widened (model/cpu_bf16.h): x once, each bf16 tile as it is made.
  const bool wide = widens(x);
  const auto x2 = wide ? x.reshape({-1, x.size(-1)}).to(torch::kFloat32) : x.reshape({-1, x.size(-1)});
  // Allocated in x's leading shape and returned as is, not as a view: LinearImpl::forward adds
  // the LoRA branch into it in place, which autograd refuses on a view made inside a Function.
  auto shape = x.sizes().vec();
  shape.back() = along;
  auto y = torch::empty(shape, x.options());
  auto y2 = y.view({-1, along});
  const auto scratch = nf4_scratch(step * across, dtype);
  for (int64_t at = 0; at < along; at += step) {
    const int64_t n = std::min(step, along - at);
    const auto tile = transposed ? nf4_dequantize_tile_into(w, scales, at, n, 0, in, scratch)    // [n, in]
                                 : nf4_dequantize_tile_into(w, scales, 0, out, at, n, scratch);  // [out, n]
    const auto t = wide ? tile.to(torch::kFloat32) : tile;
    y2.narrow(1, at, n).copy_(torch::mm(x2, transposed ? t.t() : t));  // rounded once into y
  }
  return y;
}

// y = x W^T with W held in NF4: dequantized to x's dtype in forward and again in backward, where
// only x gets a gradient. The weight is referenced, not saved: it outlives the graph.
struct Nf4Matmul : public torch::autograd::Function<Nf4Matmul> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const Nf4Weight* w) {
    ctx->saved_data["w"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(w));
    return nf4_product(x, *w, true);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto* w = reinterpret_cast<const Nf4Weight*>(static_cast<intptr_t>(ctx->saved_data["w"].toInt()));
    return {nf4_product(grad[0], *w, false), torch::Tensor()};
  }
};

// x W^T + b with the base weight as it is held (a tensor, or NF4 dequantized for the product).
torch::Tensor base_product(const LinearImpl& l, const torch::Tensor& x) {
  if (!l.is_nf4() && widens(x)) {  // bf16 on a CPU without bf16 products (model/cpu_bf16.h)
    auto y = widened_linear(x, l.weight, torch::Tensor(), 1.0);
    return l.bias.defined() ? y + l.bias.to(y.scalar_type()) : y;
  }
  if (!l.is_nf4()) return torch::nn::functional::linear(x, l.weight, l.bias);
  if (!l.nf4) throw std::logic_error("Linear: NF4 weight not loaded");
  auto y = Nf4Matmul::apply(x, l.nf4.get());
  return l.bias.defined() ? y + l.bias.to(y.scalar_type()) : y;
}

}  // namespace

void LinearImpl::mark_nf4() {
  if (is_nf4()) return;
  nf4_shape_ = weight.sizes().vec();
  torch::NoGradGuard no_grad;
  weight.set_data(torch::empty({0}, weight.options()));
  weight.set_requires_grad(false);
}

void LinearImpl::set_nf4(Nf4Weight q) {
  if (q.shape != std::vector<int64_t>{out_features(), in_features()})
    throw std::invalid_argument("set_nf4: weight shape " + c10::str(c10::IntArrayRef(q.shape)) + ", expected [" +
                                std::to_string(out_features()) + ", " + std::to_string(in_features()) + "]");
  if (!is_nf4()) mark_nf4();
  nf4 = std::make_shared<const Nf4Weight>(std::move(q));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (!lora_A || merged_) return base_product(*this, x);
  // The adapter's product accumulated into the base output in place, y = x W^T + b, then
  // y += scale · (dropout(x) A^T) B^T as one product with alpha = scale, on 2-D views so autograd
  // sees plain tensors: no [N, out] temporaries for the scaling, the sum or a cast.
  // In float32 that is PEFT's arithmetic. With bf16 activations (float32 adapter weights) the
  // first product, u = x A^T, runs in float32 on a float32 copy of the input, as PEFT computes it,
  // and u (r columns) is rounded to bf16 for the second, u B^T, accumulated into the bf16 base
  // output as torch.autocast would run it (float32 accumulation, the sum rounded once). A in bf16
  // as well, as autocast has it, hid A's small updates (1e-4 against values ~0.05 is under half
  // a bf16 step): over 200 medium-shape steps the loss ended 0.98% above float32's, against
  // -0.06% this way. PEFT without autocast computes the whole branch and the sum in float32
  // [N, out] tensors and casts back: 4-5 extra passes over [N, out] each way, about a quarter of
  // a medium-shape bf16 step.
  const auto x2 = x.reshape({-1, x.size(-1)});
  auto y = base_product(*this, x2);
  const auto dtype = x.scalar_type(), adapter = lora_A->weight.scalar_type();
  auto h = x2.to(adapter);  // casts: no-ops in float32
  if (lora_dropout > 0.0 && is_training()) h = torch::dropout(h, lora_dropout, /*train=*/true);
  auto u = torch::nn::functional::linear(h, lora_A->weight).to(dtype);
  if (widens(u))
    y = widened_linear(u, lora_B->weight.to(dtype), y, lora_scale);  // the same sum, widened (model/cpu_bf16.h)
  else
    y.addmm_(u, lora_B->weight.to(dtype).t(), 1.0, lora_scale);
  auto sizes = x.sizes().vec();
  sizes.back() = y.size(-1);
  return y.view(sizes);
}

void LinearImpl::add_lora(int64_t r, double scale, double dropout) {
  if (lora_A) throw std::invalid_argument("add_lora: this Linear already has a LoRA adapter");
  if (r <= 0) throw std::invalid_argument("add_lora: r = " + std::to_string(r) + ": must be > 0");
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    throw std::invalid_argument("add_lora: dropout = " + std::to_string(dropout) +
                                ": must be in [0, 1)");
  }
  auto a = std::make_shared<LinearImpl>(in_features(), r, false);
  auto b = std::make_shared<LinearImpl>(r, out_features(), false);
  for (auto* m : {a.get(), b.get()}) {
    m->to(weight.device(), torch::kFloat32);
    torch::NoGradGuard no_grad;
    m->weight.zero_();
  }
  lora_A = register_module("lora_A", a);
  lora_B = register_module("lora_B", b);
  lora_scale = scale;
  lora_dropout = dropout;
  merged_ = false;
}

int64_t LinearImpl::lora_rank() const { return lora_A ? lora_A->weight.size(0) : 0; }

torch::Tensor LinearImpl::lora_delta() const {
  return torch::matmul(lora_B->weight, lora_A->weight) * lora_scale;  // adapter dtype (float32)
}

namespace {
// The weight in the wider of its own and the adapter's dtype (bf16 -> float32), for merging.
torch::Tensor widened(const torch::Tensor& w, const torch::Tensor& delta) {
  return w.to(torch::promote_types(w.scalar_type(), delta.scalar_type()));
}
}  // namespace

void LinearImpl::merge() {
  if (!lora_A) throw std::logic_error("merge(): this Linear has no LoRA adapter");
  if (is_nf4())
    throw std::invalid_argument("cannot merge a LoRA adapter into an NF4 weight: merge into the unquantized base");
  if (merged_) return;
  torch::NoGradGuard no_grad;
  auto delta = lora_delta();
  weight.copy_(widened(weight, delta) + delta);  // copy_ casts back to the weight's dtype
  merged_ = true;
}

void LinearImpl::unmerge() {
  if (!lora_A) throw std::logic_error("unmerge(): this Linear has no LoRA adapter");
  if (!merged_) return;
  torch::NoGradGuard no_grad;
  auto delta = lora_delta();
  weight.copy_(widened(weight, delta) - delta);
  merged_ = false;
}

LoraFactorsImpl::LoraFactorsImpl(int64_t in_features, int64_t out_features, int64_t r, double scale,
                                 double dropout, torch::Device device)
    : lora_scale(scale), lora_dropout(dropout) {
  if (r <= 0) throw std::invalid_argument("LoRA r = " + std::to_string(r) + ": must be > 0");
  auto a = std::make_shared<LinearImpl>(in_features, r, false);
  auto b = std::make_shared<LinearImpl>(r, out_features, false);
  for (auto* m : {a.get(), b.get()}) {
    m->to(device, torch::kFloat32);
    torch::NoGradGuard no_grad;
    m->weight.zero_();
  }
  lora_A = register_module("lora_A", a);
  lora_B = register_module("lora_B", b);
}

torch::Tensor LoraFactorsImpl::delta(const torch::Tensor& x) {
  auto h = x.to(torch::kFloat32);
  if (lora_dropout > 0.0 && is_training()) h = torch::dropout(h, lora_dropout, /*train=*/true);
  return torch::nn::functional::linear(torch::nn::functional::linear(h, lora_A->weight), lora_B->weight) * lora_scale;
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps); }

// ---------------------------------------------------------------------------------------------
// Attention

AttentionImpl::AttentionImpl(const LlamaConfig& cfg)
    : num_heads(cfg.num_attention_heads),
      num_kv_heads(cfg.num_key_value_heads),
      head_dim(cfg.resolved_head_dim()) {
  const int64_t d = cfg.hidden_size;
  const bool qkv_bias = cfg.attention_bias;
  q_proj = register_module("q_proj", Linear(d, num_heads * head_dim, qkv_bias));
  k_proj = register_module("k_proj", Linear(d, num_kv_heads * head_dim, qkv_bias));
  v_proj = register_module("v_proj", Linear(d, num_kv_heads * head_dim, qkv_bias));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, d, false));
}

namespace {

// Boolean [B|1, 1, Tq, Tk] mask of allowed (query, key) pairs: causal with `past` cached keys,
// and within the same segment when segment ids are given.
torch::Tensor allowed_pairs(int64_t tq, int64_t past, const AttentionMask& mask,
                            const torch::Device& device) {
  const int64_t tk = past + tq;
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto qi = torch::arange(past, tk, opts).unsqueeze(1);
  auto ki = torch::arange(0, tk, opts).unsqueeze(0);
  auto allowed = (ki <= qi).unsqueeze(0).unsqueeze(0);
  if (mask.segment_ids.defined()) {
    if (past != 0) throw std::invalid_argument("segment_ids cannot be combined with a KV cache");
    auto seg = mask.segment_ids.to(device);
    auto same = seg.unsqueeze(2) == seg.unsqueeze(1);  // [B, T, T]
    allowed = allowed.logical_and(same.unsqueeze(1));
  }
  return allowed;
}

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& allowed, bool plain_causal) {
#if TORCH_VERSION_MAJOR >= 2
  if (plain_causal) {
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  }
  return at::scaled_dot_product_attention(q, k, v, allowed, 0.0, false);
#else
  (void)plain_causal;
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = bf16_matmul(q, k.transpose(-2, -1)) * scale;
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  return bf16_matmul(probs, v);
#endif
}

}  // namespace

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const AttentionMask& mask,
                                     KVCache* cache, int64_t layer) {
  const int64_t b = x.size(0), t = x.size(1);
  auto q = q_proj(x).view({b, t, num_heads, head_dim}).transpose(1, 2);
  auto k = k_proj(x).view({b, t, num_kv_heads, head_dim}).transpose(1, 2);
  auto v = v_proj(x).view({b, t, num_kv_heads, head_dim}).transpose(1, 2);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);

  int64_t past = 0;
  if (cache) {
    past = cache->length;
    if (past + t > cache->capacity) {
      throw std::invalid_argument("KV cache full: " + std::to_string(past + t) + " positions > " +
                                  "capacity " + std::to_string(cache->capacity));
    }
    cache->k[layer].narrow(2, past, t).copy_(k);
    cache->v[layer].narrow(2, past, t).copy_(v);
    k = cache->k[layer].narrow(2, 0, past + t);
    v = cache->v[layer].narrow(2, 0, past + t);
  }
  // On the CPU, training and full-sequence passes: block-wise attention over the segments
  // (model/attention_kernel.h), grouped heads read in place. Elsewhere (a cache, a GPU, segment
  // ids that are not one run each) the dense mask below.
  if (past == 0 && x.device().is_cpu() &&
      (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16)) {
    const auto starts = segment_run_starts(mask.segment_ids, b, t);
    if (starts.defined()) {
      auto out = segment_causal_attention(q, k, v, starts);  // a view of [B, T, H, hd]
      return o_proj(out.transpose(1, 2).reshape({b, t, num_heads * head_dim}));
    }
  }
  const int64_t rep = num_heads / num_kv_heads;
  if (rep > 1) {  // query head h reads key/value head h / rep
    k = k.repeat_interleave(rep, 1);
    v = v.repeat_interleave(rep, 1);
  }
  const bool plain_causal = past == 0 && !mask.segment_ids.defined();
  torch::Tensor allowed;
#if TORCH_VERSION_MAJOR >= 2
  if (!plain_causal) allowed = allowed_pairs(t, past, mask, x.device());
#else
  allowed = allowed_pairs(t, past, mask, x.device());
#endif
  auto out = attend(q, k, v, allowed, plain_causal);
  out = out.transpose(1, 2).reshape({b, t, num_heads * head_dim});
  return o_proj(out);
}

// ---------------------------------------------------------------------------------------------
// MLP, decoder layer, body

MlpImpl::MlpImpl(const LlamaConfig& cfg) {
  const int64_t d = cfg.hidden_size, h = cfg.intermediate_size;
  gate_proj = register_module("gate_proj", Linear(d, h, cfg.mlp_bias));
  up_proj = register_module("up_proj", Linear(d, h, cfg.mlp_bias));
  down_proj = register_module("down_proj", Linear(h, d, cfg.mlp_bias));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(swiglu(gate_proj(x), up_proj(x)));
}

DecoderLayerImpl::DecoderLayerImpl(const LlamaConfig& cfg) {
  self_attn = register_module("self_attn", Attention(cfg));
  mlp = register_module("mlp", Mlp(cfg));
  input_layernorm = register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const AttentionMask& mask,
                                        KVCache* cache, int64_t layer) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

// Gradient checkpointing of one decoder layer (the reentrant scheme): the forward pass runs
// without recording a graph and keeps only the layer's input; backward re-runs the layer with
// the random generator of the input's device restored to its state at the first pass (so
// dropout draws the same masks), then back-propagates the incoming gradient through the
// recomputed graph. Parameter gradients accumulate into .grad as usual; the input's gradient is
// returned. Activation memory drops from all layers' intermediates to one input per layer.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin,
                               const torch::Tensor& segment_ids, int64_t layer_ptr) {
    auto gen = at::globalContext().defaultGenerator(x.device());
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      ctx->saved_data["rng"] = gen.get_state();
    }
    ctx->saved_data["layer"] = layer_ptr;
    ctx->save_for_backward({x, cos, sin, segment_ids});
    torch::NoGradGuard no_grad;
    return reinterpret_cast<DecoderLayerImpl*>(layer_ptr)->forward(x, cos, sin, AttentionMask{segment_ids},
                                                                   nullptr, 0);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    auto x = saved[0].detach().requires_grad_(true);
    auto gen = at::globalContext().defaultGenerator(x.device());
    torch::Tensor now;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      now = gen.get_state();
      gen.set_state(ctx->saved_data["rng"].toTensor());
    }
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      y = layer->forward(x, saved[1], saved[2], AttentionMask{saved[3]}, nullptr, 0);
    }
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

LlamaBodyImpl::LlamaBodyImpl(const LlamaConfig& cfg) {
  embed_tokens = register_module(
      "embed_tokens", torch::nn::Embedding(torch::nn::EmbeddingOptions(cfg.vocab_size, cfg.hidden_size)));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(DecoderLayer(cfg));
  norm = register_module("norm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

torch::Tensor LlamaBodyImpl::embed(const torch::Tensor& tokens) {
  const auto& w = embed_tokens->weight;
  auto h = torch::embedding(w, tokens);
  if (!embed_lora_A.defined() || embed_lora_merged) return h;
  // PEFT's lora.Embedding: F.embedding(x, A^T) @ B^T * scale, added to the base lookup.
  auto delta = torch::matmul(torch::embedding(embed_lora_A.t(), tokens), embed_lora_B.t()) * embed_lora_scale;
  return (h + delta).to(w.scalar_type());  // + promotes bf16 to float32
}

void LlamaBodyImpl::add_embedding_lora(int64_t r, double scale) {
  if (embed_lora_A.defined()) throw std::invalid_argument("add_embedding_lora: the embedding already has a LoRA adapter");
  if (r <= 0) throw std::invalid_argument("add_embedding_lora: r = " + std::to_string(r) + ": must be > 0");
  const auto& w = embed_tokens->weight;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(w.device());
  embed_lora_A = embed_tokens->register_parameter("lora_embedding_A", torch::zeros({r, w.size(0)}, opts));
  embed_lora_B = embed_tokens->register_parameter("lora_embedding_B", torch::zeros({w.size(1), r}, opts));
  embed_lora_scale = scale;
  embed_lora_merged = false;
}

torch::Tensor LlamaBodyImpl::embedding_lora_delta() const {
  return torch::matmul(embed_lora_B, embed_lora_A).t() * embed_lora_scale;
}

void LlamaBodyImpl::merge_embedding_lora() {
  if (!embed_lora_A.defined()) throw std::logic_error("merge_embedding_lora(): no adapter");
  if (embed_lora_merged) return;
  torch::NoGradGuard no_grad;
  auto& w = embed_tokens->weight;
  w.copy_(w.to(torch::kFloat32) + embedding_lora_delta());
  embed_lora_merged = true;
}

void LlamaBodyImpl::unmerge_embedding_lora() {
  if (!embed_lora_A.defined()) throw std::logic_error("unmerge_embedding_lora(): no adapter");
  if (!embed_lora_merged) return;
  torch::NoGradGuard no_grad;
  auto& w = embed_tokens->weight;
  w.copy_(w.to(torch::kFloat32) - embedding_lora_delta());
  embed_lora_merged = false;
}

// ---------------------------------------------------------------------------------------------
// Causal LM

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  model = register_module("model", LlamaBody(cfg_));
  if (!cfg_.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(cfg_.hidden_size, cfg_.vocab_size, false));
  }
  inv_freq_ = rope_inv_freq(cfg_.resolved_head_dim(), cfg_.rope_theta, cfg_.rope_scaling);
}

const torch::Tensor& LlamaForCausalLMImpl::lm_head_weight() const {
  return cfg_.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor LlamaForCausalLMImpl::forward_hidden(const torch::Tensor& tokens,
                                                   torch::Tensor positions,
                                                   const AttentionMask& mask, KVCache* cache) {
  if (tokens.dim() != 2) {
    throw std::invalid_argument("tokens must be [batch, time], got " +
                                std::to_string(tokens.dim()) + " dims");
  }
  const int64_t b = tokens.size(0), t = tokens.size(1);
  const auto& emb = model->embed_tokens->weight;
  if (!positions.defined()) {
    const int64_t start = cache ? cache->length : 0;
    positions = torch::arange(start, start + t, torch::TensorOptions().dtype(torch::kInt64))
                    .unsqueeze(0)
                    .expand({b, t})
                    .to(emb.device());
  }
  auto [cos, sin] = rope_cos_sin(inv_freq_.to(emb.device()), positions);
  auto h = model->embed(tokens.to(emb.device()));
  const bool recompute = gradient_checkpointing && is_training() && !cache && torch::GradMode::is_enabled();
  // A checkpointed layer only back-propagates when its input requires grad; with frozen
  // embeddings (LoRA) the first layer's input is made a leaf that does.
  if (recompute && !h.requires_grad()) h = h.detach().requires_grad_(true);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto* layer = model->layers[i]->as<DecoderLayerImpl>();
    h = recompute ? CheckpointedLayer::apply(h, cos, sin, mask.segment_ids, reinterpret_cast<int64_t>(layer))
                  : layer->forward(h, cos, sin, mask, cache, static_cast<int64_t>(i));
  }
  if (cache) cache->length += t;
  return model->norm(h);
}

torch::Tensor LlamaForCausalLMImpl::project(const torch::Tensor& hidden) {
  if (lm_head && lm_head->has_lora()) return lm_head->forward(hidden).to(torch::kFloat32);
  auto logits = head_product(hidden).to(torch::kFloat32);
  if (tied_head_lora) logits = logits + tied_head_lora->delta(hidden);
  return logits;
}

torch::Tensor LlamaForCausalLMImpl::head_product(const torch::Tensor& hidden) const {
  const auto& w = lm_head_weight();
  // bf16 on a CPU without bf16 products: widened (model/cpu_bf16.h)
  return widens(hidden) ? widened_linear(hidden, w, torch::Tensor(), 1.0) : torch::matmul(hidden, w.t());
}

void LlamaForCausalLMImpl::add_tied_head_lora(int64_t r, double scale, double dropout) {
  if (!cfg_.tie_word_embeddings) throw std::invalid_argument("add_tied_head_lora: lm_head is not tied");
  if (tied_head_lora) throw std::invalid_argument("add_tied_head_lora: lm_head already has a LoRA adapter");
  const auto& w = model->embed_tokens->weight;
  tied_head_lora = register_module("lm_head", LoraFactors(w.size(1), w.size(0), r, scale, dropout, w.device()));
}

KVCache LlamaForCausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  auto opts = model->embed_tokens->weight.options().requires_grad(false);
  const int64_t kvh = cfg_.num_key_value_heads, hd = cfg_.resolved_head_dim();
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    cache.k.push_back(torch::zeros({batch, kvh, capacity, hd}, opts));
    cache.v.push_back(torch::zeros({batch, kvh, capacity, hd}, opts));
  }
  return cache;
}

void LlamaForCausalLMImpl::init_weights(uint64_t seed, double std) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    if (name.find(".lora_") != std::string::npos) continue;  // adapters: model/lora.h
    const bool is_norm = name.find("norm") != std::string::npos;
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (is_norm) {
      t.fill_(1.0);
    } else if (is_bias) {
      t.zero_();
    } else {
      auto cpu = at::normal(0.0, std, t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32));
      t.copy_(cpu);
    }
  }
}

void mark_nf4_linears(LlamaForCausalLM& model) {
  for (const auto& m : model->model->layers->named_modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(m.value().get()); lin && m.key().find("lora_") == std::string::npos)
      lin->mark_nf4();  // adapter factors stay float32
}

std::vector<std::pair<std::string, LinearImpl*>> nf4_linears(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& m : model->named_modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(m.value().get()); lin && lin->is_nf4()) out.emplace_back(m.key(), lin);
  return out;
}

torch::Tensor next_token_loss(const torch::Tensor& logits, const torch::Tensor& tokens) {
  const int64_t v = logits.size(-1), t = logits.size(1);
  auto pred = logits.narrow(1, 0, t - 1).reshape({-1, v});
  auto target = tokens.narrow(1, 1, t - 1).reshape({-1}).to(logits.device());
  return torch::nn::functional::cross_entropy(pred.to(torch::kFloat32), target);
}

}  // namespace ringtune
