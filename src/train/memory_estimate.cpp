// The memory estimate; see memory_estimate.h.
//
// Derivation. The lecture's per-layer activation count, L·(34·h·b·s + 5·a·b·s²) bytes for a GPT
// layer in 16 bits (Korthikanti et al. 2022: 34 = attention 11 + MLP 19 + norms 4, with dropout
// masks and a 4·h MLP), does not fit ringtune's Llama as is: the MLP is SwiGLU of width I (not 4h),
// keys and values have K heads of H (grouped-query attention; ringtune repeats them to H heads
// before the products), RMSNorm computes in float32, RoPE multiplies by cos/sin copies, there is no
// dropout outside the LoRA branch, and the softmax runs in float32. So the count below is made
// op by op from what libtorch keeps for the backward pass of ringtune's forward (model/llama.cpp),
// per token of a micro-batch (N = B·T tokens), for a compute dtype of e bytes (4 or 2):
//
//   RMSNorm (x2)        eager: the float32 input (the input itself in float32, a float32 copy in
//                       bf16), kept by the square and the product with rsqrt, the square itself
//                       (kept by libtorch 1.13's mean.dim: seen with saved_tensors_hooks in Debian's
//                       python3-torch, and with the allocator hook in tests/test_memory_estimate.cpp)
//                       and the rsqrt column:                                   2 · (8d + 4)
//                       with a trained norm weight (full fine-tuning) also the
//                       normalised value kept by the product with it:           + 2 · e·d
//                       fused (the CPU's kernels, model/pointwise.h): the input and the
//                       rsqrt column, whether the weight trains or not:         2 · (e·d + 4)
//   projections         a frozen weight keeps nothing of its input; a trained one (full fine-tuning)
//                       keeps it: the norm outputs (q/k/v and gate/up read one each), the attention
//                       output (o) and the SwiGLU product (down):               + e·(2d + H·hd + I)
//   LoRA branch         per adapted projection of input width w: the float32 input of A (its own
//                       copy in bf16, the shared input itself in float32),       4w (per input in f32)
//                       with dropout the float32 mask and the dropped input     8w
//                       and A's output (rounded to the compute dtype) kept by
//                       the product with B:                                      + e·r
//   attention           q after RoPE, k and v repeated to H heads (kept by the two products):
//                                                                                e·H·hd·(1 + 2·[K<H]) + 2e·K·hd·[K=H]
//                       RoPE's cos/sin in bf16 (copies for q and k):             4·e·hd (bf16 eager only)
//                       eager (libtorch 1.x): the float32 softmax output          4·H·T
//                       and its bf16 copy kept by the weighting product          + 2·H·T (bf16 only)
//                       and the boolean mask kept by masked_fill                 + T (packed) or T/B
//                       fused (scaled_dot_product_attention): output and
//                       log-sum-exp instead of the T·T terms                     e·H·hd + 4·H
//                       on the CPU, ringtune's block-wise kernel (k, v unrepeated, no mask): the
//                       output and the visited blocks' float32 probabilities,
//                       at most (one segment per row, blocks of 128 rows)        e·H·hd + 4·H·a(T)
//   SwiGLU MLP          gate output (SiLU), SiLU output and up output (product): 3·e·I
//                       fused: gate and up outputs                               2·e·I
//   residual adds       nothing
//
// In the first layer, with a frozen embedding, the first norm keeps nothing (its input needs no
// gradient), nor does the scores' product keep q when k_proj has no adapter.
//
// Gradient checkpointing keeps only each layer's input (e·d per token, CheckpointedLayer, and the
// generator state) and recomputes one layer at a time in the backward pass, so the peak holds the
// L inputs plus one layer's activations and its backward working set: the larger of the MLP's two
// gradients of width I (2·e·I) and the attention's, when the MLP's activations are already
// released ((6 + e)·H·T for the probabilities' and scores' gradients eager, 3·e·H·hd fused, the CPU
// kernel's float32 gradients 12·H·hd (+ 3·e·H·hd for their bf16 copies), minus 3·e·I). Full
// fine-tuning: the weights' gradients accumulate as the layers' activations are released; the peak
// is at the loss or at the last layer processed (every gradient but the first layer's and the
// embedding's, one layer's activations).
//
// Output layer and loss (src/train/loss.cpp): logits exist only for a chunk of rows ≤ 64 Mi / V at a
// time. A frozen output layer (LoRA on the body): the forward pass makes the hidden states' gradient
// chunk by chunk; on the CPU from the logits in e, turned into their gradient in place by the fused
// kernel (src/train/xent_kernel.h), rows·V·e; on a GPU from the float32 logits and their
// log-softmax (turned into the logits' gradient in place), rows·V·8, in bf16 also the product's
// bf16 output and the gradient's bf16 copy, + rows·V·4.
// A trained one: the backward pass recomputes a chunk's logits (in e, then float32), keeps the
// log-softmax and makes its gradient and the logits' gradient, three float32 [rows, V] at once:
// rows·V·12. The final norm keeps 4d and the loss keeps the hidden states e·d per token (the
// frozen layer's path: their gradient, the same size).
//
// Persistent state: frozen weights (e bytes per value; NF4 projections 0.5 byte + one byte of
// double-quantized scale per 64 values + float32 second-level scales, plus one projection
// dequantized at a time, on the CPU a tile of it of at most nf4_tile_bytes), trainable tensors (float32 adapters, e for the rest), the float32 flat
// gradient buffer (all trainable values, every rank), the float32 master and the moments of this
// rank's optimizer range (all of it for ZeRO-0, 1/world for ZeRO-1; 8-bit: one byte per value and a
// float32 absmax per 256 for tensors of ≥ 4096 values). Autograd's own gradients (the parameters'
// dtype) live from the backward pass until they are added into the flat buffer. The optimizer step
// adds float32 temporaries of the range (√v and its scaled copy for float32 Adam) and, for ZeRO-1,
// the reduced range and the all-gathered values. On the CPU the process itself (libtorch, MPI,
// OpenMP stacks) is measured and added; on a GPU a CUDA context allowance is added instead.
//
// Peak = persistent + the largest of: activations and loss buffers at the start of the backward
// pass (plus the output layer's gradient when it trains), autograd's gradients at its end, the
// optimizer step's temporaries.
#include "src/train/memory_estimate.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "model/cpu_bf16.h"         // defines: cpu_bf16_products_widened
#include "model/attention_kernel.h"  // defines: attention_kernel_saved_per_row, attention_kernel_bf16_products
#include "model/parameter_shapes.h"
#include "model/pointwise.h"  // defines: fused_pointwise
#include "model/quant.h"  // defines: nf4_tile_bytes
#include "src/cpu_pool.h"  // defines: cpu_pool_min_bytes
#include "src/train/loss.h"  // defines: loss_chunk_rows

namespace ringtune {

namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kCudaContext = 512 * kMiB;               // CUDA context, cuBLAS/NCCL workspaces (assumed)
// On the CPU, tensors of 256 KiB and more come from ringtune's block pool (src/cpu_pool.h), which
// holds at most the live peak plus 1/16 of the step's part of it; smaller ones from glibc's heap,
// which keeps freed blocks resident (it returns only the top of the heap) and grows over the first
// steps to a plateau (traced with RINGTUNE_TRACE_MEMORY). What the heap keeps beyond the live
// tensors is modelled as
//   kRetainLayer x the heap-served bytes of one layer's activations and backward working set (the
//                  freed temporaries of a layer's forward and backward passes, left as holes)
// + kRetainSaved x the heap-served bytes of the activations kept across layers (fragmentation
//                  between long-lived tensors).
// The two factors were fitted when glibc served every tensor under 32 MiB, on two runs of
// bench/memory_estimate.sh (TinyLlama's shape, LoRA, gradient checkpointing on and off); with the
// pool they apply to the few small tensors left.
constexpr double kRetainLayer = 3.5, kRetainSaved = 0.45;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t x : shape) n *= x;
  return n;
}

struct Shapes {
  int64_t d, qd, kvd, hd, inter, heads, kv_heads, layers, vocab;
};

// Bytes of tensors split by how they are served on the CPU: from 256 KiB (cpu_pool_min_bytes) by
// ringtune's block pool (src/cpu_pool.h), which holds at most the live peak and 1/16 of the
// transient part of it, below that by glibc's heap, which keeps freed space resident (see
// kRetainLayer).
struct Bytes {
  int64_t heap = 0, pooled = 0;
  void add(int64_t tensor_bytes, int64_t count = 1) {
    (tensor_bytes >= cpu_pool_min_bytes ? pooled : heap) += tensor_bytes * count;
  }
  Bytes& operator+=(const Bytes& o) {
    heap += o.heap;
    pooled += o.pooled;
    return *this;
  }
  int64_t total() const { return heap + pooled; }
};
Bytes operator+(Bytes a, const Bytes& b) { return a += b; }
Bytes times(Bytes a, int64_t n) {
  a.heap *= n;
  a.pooled *= n;
  return a;
}

// Whether the decoder's norms, rotary embeddings and SwiGLU run as the fused CPU kernels
// (model/pointwise.h), which keep less than the eager operators.
bool pointwise_fused(const MemoryInputs& in) { return !in.cuda && fused_pointwise(); }

// One decoder layer's saved activations for N tokens (see the derivation above), tensor by tensor.
Bytes layer_bytes(const MemoryInputs& in, const Shapes& s, const std::set<std::string>& adapted, int64_t N) {
  const int64_t e = in.dtype_bytes, T = in.seq;
  const bool full = !in.lora.has_value();
  Bytes b;
  const bool fused = pointwise_fused(in);
  if (fused) b.add(e * s.d * N, 2);  // the two norms' inputs
  else b.add(4 * s.d * N, 4);        // the two norms: float32 input and its square (kept by the mean) each
  b.add(4 * N, 2);                   // their rsqrt columns
  if (full) {
    // normalised values (trained norm weights; not by the fused norm) and the norm outputs (trained projections)
    b.add(e * s.d * N, fused ? 2 : 4);
    b.add(e * s.qd * N);
    b.add(e * s.inter * N);
  } else {
    const bool dropout = in.lora->lora_dropout > 0;
    const std::vector<std::pair<std::vector<const char*>, int64_t>> groups = {
        {{"q_proj", "k_proj", "v_proj"}, s.d}, {{"o_proj"}, s.qd}, {{"gate_proj", "up_proj"}, s.d}, {{"down_proj"}, s.inter}};
    for (const auto& [names, w] : groups) {
      int64_t n = 0;
      for (const char* m : names) n += adapted.count(m);
      if (n == 0) continue;
      if (dropout) b.add(4 * w * N, 2 * n);          // mask and dropped input per adapter
      else b.add(4 * w * N, e == 4 ? 1 : n);          // the shared float32 input, or a copy per adapter
      b.add(e * in.lora->r * N, n);                   // A's output
    }
  }
  // k and v repeated to H heads, except by the CPU's block-wise kernel (which reads them in place).
  const bool grouped = s.kv_heads < s.heads && !(in.fused_attention && !in.cuda);
  b.add(e * s.qd * N);                                 // q after RoPE
  b.add(e * (grouped ? s.qd : s.kvd) * N, 2);          // k and v
  if (e != 4 && !fused) b.add(e * s.hd * N, 4);       // RoPE's cos/sin in bf16, for q and k
  if (in.fused_attention) {
    b.add(e * s.qd * N);                               // output
    if (in.cuda) {
      b.add(4 * s.heads * N);                          // log-sum-exp
      if (in.packed) b.add(T * N);                     // SDPA's boolean mask
    } else {  // the visited blocks' probabilities (at most), in bf16 where its products are bf16
      const int64_t pe = e == 2 && attention_kernel_bf16_products() ? 2 : 4;
      b.add(static_cast<int64_t>(pe * s.heads * attention_kernel_saved_per_row(T)) * N);
    }
  } else {
    b.add(4 * s.heads * T * N);                        // softmax output
    if (e != 4) b.add(e * s.heads * T * N);            // its bf16 copy
    b.add(in.packed ? T * N : T * T);                  // the boolean mask
  }
  b.add(e * s.inter * N, fused ? 2 : 3);               // SwiGLU: gate and up (eager: and SiLU's output)
  return b;
}

// The gradient buffers alive during one layer's backward pass (see the derivation above).
Bytes layer_backward_working(const MemoryInputs& in, const Shapes& s, int64_t N) {
  const int64_t e = in.dtype_bytes;
  // Fused: the gradients of q, k and v (the CPU kernel makes them in float32, then casts them).
  const int64_t fused = in.cuda ? 3 * e * s.qd : (12 + (e == 4 ? 0 : 3 * e)) * s.qd;
  const int64_t attention = (in.fused_attention ? fused : (6 + e) * s.heads * in.seq) - 3 * e * s.inter;
  Bytes b;
  if (attention > 2 * e * s.inter) b.add(attention * N);  // about the size class of the scores
  else b.add(e * s.inter * N, 2);
  // bf16 products widened on this CPU (model/cpu_bf16.h): the MLP's products run on float32
  // copies of their operands and results (the incoming gradient, the product, the weight).
  if (e == 2 && !in.cuda && cpu_bf16_products_widened()) b.add(4 * (s.d + s.inter) * N + 4 * s.d * s.inter);
  return b;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string fmt_count(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fB", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

MemoryEstimate estimate_memory(const MemoryInputs& in) {
  const LlamaConfig& c = in.model;
  const Shapes s{c.hidden_size,
                 c.num_attention_heads * c.resolved_head_dim(),
                 c.num_key_value_heads * c.resolved_head_dim(),
                 c.resolved_head_dim(),
                 c.intermediate_size,
                 c.num_attention_heads,
                 c.num_key_value_heads,
                 c.num_hidden_layers,
                 c.vocab_size};
  const int64_t e = in.dtype_bytes, N = in.micro_batch * in.seq;
  const bool full = !in.lora.has_value();
  MemoryEstimate out;

  // Which tensors train, and which projections carry an adapter (layer 0 stands for all).
  const auto trainable = trainable_shapes(c, in.lora);
  std::map<std::string, int64_t> trained;
  std::set<std::string> adapted;  // "q_proj", ... from layer 0's adapter names
  const std::string layer0 = "model.layers.0.", factor = ".lora_A.weight";
  for (const auto& [name, shape] : trainable) {
    trained[name] = numel(shape);
    if (name.rfind(layer0, 0) == 0 && ends_with(name, factor)) {
      const std::string module = name.substr(0, name.size() - factor.size());
      adapted.insert(module.substr(module.rfind('.') + 1));
    }
  }

  // Frozen weights.
  int64_t frozen = 0, nf4_values = 0, largest_projection = 0, widest = 0, frozen_params = 0;
  for (const auto& [name, shape] : parameter_shapes(c)) {
    if (trained.count(name)) continue;
    const int64_t n = numel(shape);
    frozen_params += n;
    // NF4: every Linear weight of the decoder layers, as mark_nf4_linears (2-D; biases and norms are 1-D)
    if (in.nf4 && name.rfind("model.layers.", 0) == 0 && shape.size() == 2) {
      const int64_t blocks = ceil_div(n, 64);
      frozen += ceil_div(n, 2) + blocks + 4 * ceil_div(blocks, 256) + 4;
      nf4_values += n;
      largest_projection = std::max(largest_projection, n);
      widest = std::max({widest, shape[0], shape[1]});
    } else {
      frozen += n * e;
    }
  }
  // The one projection dequantized at a time: on the CPU a tile of it (whole rows or columns).
  if (in.nf4) frozen += in.cuda ? largest_projection * e : std::min(largest_projection * e, std::max(nf4_tile_bytes, widest * e));
  out.frozen_params = frozen_params;

  // Trainable tensors, their gradients, the optimizer.
  int64_t params_bytes = 0, trainable_n = 0, largest_trained = 0, moments_all = 0;
  Bytes grads, lm_head_grad, first_layer_grads, embedding_grad, small_moments;
  for (const auto& [name, n] : trained) {
    const int64_t bytes = n * (is_lora_parameter(name) ? 4 : e);
    params_bytes += bytes;
    grads.add(bytes);
    if (name == "lm_head.weight" || (c.tie_word_embeddings && name == "model.embed_tokens.weight")) lm_head_grad.add(bytes);
    if (name.rfind("model.layers.0.", 0) == 0) first_layer_grads.add(bytes);
    if (name.rfind("model.embed_tokens.", 0) == 0) embedding_grad.add(bytes);
    trainable_n += n;
    largest_trained = std::max(largest_trained, bytes);
    const bool q8 = in.eight_bit && n >= in.min_8bit_size;
    moments_all += q8 ? 2 * (n + 4 * ceil_div(n, 256)) : 2 * 4 * n;
    if (in.eight_bit && !q8) small_moments.add(4 * n, 2);
  }
  out.trainable_params = trainable_n;
  const bool sharded = in.zero_stage == 1 && in.world > 1;
  const int64_t range = sharded ? ceil_div(trainable_n, in.world) : trainable_n;
  const int64_t flat = 4 * trainable_n;
  const int64_t master = 4 * range;
  const int64_t moments = sharded ? ceil_div(moments_all, in.world) : moments_all;

  // Activations.
  const Bytes per_layer = layer_bytes(in, s, adapted, N);
  const Bytes working = layer_backward_working(in, s, N);
  // The final norm (as a layer's, plus its normalised value when its weight trains) and the hidden
  // states the loss keeps; RoPE's float32 cos/sin; with a frozen embedding the first layer's first
  // norm keeps nothing (its input needs no gradient), nor, without an adapter on k_proj, does the
  // scores' product keep a q for k's gradient.
  const bool fused = pointwise_fused(in);
  Bytes final_part;
  if (fused) final_part.add(e * s.d * N);
  else final_part.add(4 * s.d * N, 2);
  final_part.add(4 * N);
  final_part.add(e * s.d * N, full && !fused ? 2 : 1);
  final_part.add(4 * s.hd * N, 2);
  const bool embedding_trains = trained.count("model.embed_tokens.weight") || trained.count("model.embed_tokens.lora_embedding_A");
  Bytes first_layer_saves;  // subtracted below
  if (!embedding_trains && !in.gradient_checkpointing) {
    if (fused) first_layer_saves.add(e * s.d * N);
    else first_layer_saves.add(4 * s.d * N, 2);
    first_layer_saves.add(4 * N);
    if (!full && !adapted.count("k_proj")) first_layer_saves.add(e * s.qd * N);
  }
  const int64_t rows = std::min<int64_t>(N, loss_chunk_rows(s.vocab));
  // A frozen output layer: the loss's gradient is made in the forward pass (on the CPU the logits
  // turned into it in place; on a GPU the float32 logits, their log-softmax turned into the gradient
  // in place, in bf16 also the product's own output and the gradient's copy), and the hidden
  // states' gradient is kept instead of the hidden states.
  // A trained one: the backward pass recomputes logits, log-softmax and two gradients.
  bool head_frozen = lm_head_grad.total() == 0;
  for (const auto& [name, n] : trained) head_frozen = head_frozen && name.rfind("lm_head.", 0) != 0;
  Bytes loss;
  if (head_frozen && !in.cuda) {
    loss.add(rows * s.vocab * e);  // the CPU's fused kernel: the logits, turned into their gradient in place
  } else if (head_frozen) {
    loss.add(rows * s.vocab * 4, 2);
    if (e != 4) loss.add(rows * s.vocab * e, 2);
  } else {
    loss.add(rows * s.vocab * 4, 3);
  }
  Bytes kept, layer_peak;
  if (in.gradient_checkpointing) {
    kept.add(e * s.d * N, s.layers);
    kept.add(in.cuda ? 16 : 5056, s.layers);  // the generator state (CPU: mt19937's 5056 bytes)
    layer_peak = per_layer + working;
  } else {
    kept = times(per_layer, s.layers);
    layer_peak = working;
  }
  Bytes activations = kept + final_part;
  activations.heap -= first_layer_saves.heap;
  activations.pooled -= first_layer_saves.pooled;

  // Optimizer step temporaries.
  Bytes at_step;
  if (!in.eight_bit) at_step.add(4 * range, 2);  // sqrt(v) and its scaled copy
  at_step += small_moments;                       // 8-bit: the float32 path of small tensors
  if (sharded) {                                  // the reduced range and the all-gathered values
    at_step.add(4 * range);
    at_step.add(flat);
  }
  if (e != 4) at_step.add(largest_trained);       // one tensor rounded to its dtype at a time

  // Full fine-tuning: the weights' gradients accumulate while the layers' backward runs and their
  // activations are released: the last layer processed (the first) runs with every gradient but its
  // own and the embedding's.
  struct Phase {
    const char* name;
    Bytes bytes;
  };
  std::vector<Phase> phases;
  if (full) {
    Bytes last = (in.gradient_checkpointing ? kept : Bytes{}) + per_layer + working + grads;
    last.heap -= first_layer_grads.heap + embedding_grad.heap;
    last.pooled -= first_layer_grads.pooled + embedding_grad.pooled;
    phases.push_back({"backward pass", activations + loss});
    phases.push_back({"backward pass", last});
  } else {
    if (head_frozen) phases.push_back({"loss (forward pass)", activations + loss});
    else phases.push_back({"backward pass", activations + loss + lm_head_grad});
    phases.push_back({"backward pass", activations + layer_peak + lm_head_grad});
  }
  phases.push_back({"end of the backward pass", grads});
  for (const Phase& ph : phases) out.backward_transient = std::max(out.backward_transient, ph.bytes.total());
  phases.push_back({"optimizer step", at_step});
  const int64_t baseline = in.cuda ? kCudaContext : in.baseline_bytes;
  const int64_t persistent = baseline + frozen + params_bytes + flat + master + moments;
  int64_t live = 0;
  Bytes live_bytes;
  const char* live_phase = "backward pass";
  for (const Phase& ph : phases)
    if (ph.bytes.total() > live) live = ph.bytes.total(), live_bytes = ph.bytes, live_phase = ph.name;
  out.saved_activations = activations.total();
  out.step_transient = live;
  out.live_total = persistent + live;
  // Resident on the CPU: the live peak plus what the C heap keeps (see kRetainLayer) and the block
  // pool's margin over the peak.
  const Bytes one_layer = per_layer + working;
  const int64_t retained = static_cast<int64_t>(kRetainLayer * static_cast<double>(one_layer.heap) +
                                                kRetainSaved * static_cast<double>(kept.heap)) +
                           live_bytes.pooled / 16;
  const int64_t transient = in.cuda ? live : live + retained;
  out.total = persistent + transient;
  out.peak_phase = live_phase;
  const int64_t grads_bytes = grads.total();

  const std::string gc = in.gradient_checkpointing ? " (gradient checkpointing: layer inputs only)" : "";
  auto& p = out.parts;
  p.push_back({in.cuda ? "CUDA context (assumed)" : "process (libraries, measured)", baseline, ""});
  p.push_back({"base weights", frozen,
               fmt_count(static_cast<double>(frozen_params)) + " frozen values" +
                   (in.nf4 ? ", " + fmt_count(static_cast<double>(nf4_values)) + (in.cuda ? " in NF4 + one dequantized projection" : " in NF4 + one dequantized tile") : "")});
  p.push_back({"trainable parameters", params_bytes,
               fmt_count(static_cast<double>(trainable_n)) + (full ? " values (full fine-tuning)" : " values (LoRA r " +
                                                                                                    std::to_string(in.lora->r) + ")")});
  p.push_back({"gradient buffer", flat, "float32, all trainable values"});
  p.push_back({"optimizer state", master + moments,
               std::string(in.eight_bit ? "8-bit" : "float32") + " moments + float32 master" +
                   (sharded ? ", ZeRO-1 share 1/" + std::to_string(in.world) : "")});
  p.push_back({"activations", activations.total(),
               fmt_count(static_cast<double>(per_layer.total()) / s.d / N) + "·d bytes per token per layer" + gc});
  p.push_back({"backward working set", layer_peak.total(),
               in.gradient_checkpointing ? "one layer recomputed + its gradients" : "one layer's gradients"});
  p.push_back({"logits and loss", loss.total(), std::to_string(rows) + " rows x " + std::to_string(s.vocab) + " at a time"});
  p.push_back({"autograd gradients", grads_bytes, "until added into the buffer (end of backward)"});
  p.push_back({"optimizer step temporaries", at_step.total(), sharded ? "incl. the all-gathered values" : ""});
  if (!in.cuda)
    p.push_back({"freed memory kept (CPU)", retained,
                 "C heap: " + std::to_string(kRetainLayer).substr(0, 3) + " x one layer's tensors under 256 KiB (" +
                     format_bytes(one_layer.heap) + ") + " + std::to_string(kRetainSaved).substr(0, 4) +
                     " x the kept activations' (" + format_bytes(kept.heap) + "); block pool: 1/16 of the step's (" +
                     format_bytes(live_bytes.pooled) + ")"});
  return out;
}

std::string memory_table(const MemoryEstimate& e) {
  std::ostringstream o;
  char line[256];
  for (const auto& part : e.parts) {
    std::snprintf(line, sizeof line, "  %-30s %12s   %s\n", part.name.c_str(), format_bytes(part.bytes).c_str(),
                  part.detail.c_str());
    o << line;
  }
  std::snprintf(line, sizeof line, "  %-30s %12s   persistent + the largest live transient, without freed memory kept\n",
                "peak of live tensors", format_bytes(e.live_total).c_str());
  o << line;
  std::snprintf(line, sizeof line, "  %-30s %12s   at the %s (persistent + the largest transient)\n", "peak",
                format_bytes(e.total).c_str(), e.peak_phase.c_str());
  o << line;
  return o.str();
}

std::string memory_summary(const MemoryEstimate& e) {
  std::string s = "memory estimate per rank: " + format_bytes(e.total) + " at the " + e.peak_phase + " (";
  bool first = true;
  for (const auto& part : e.parts) {
    if (part.bytes == 0) continue;
    s += (first ? "" : ", ") + part.name + " " + format_bytes(part.bytes);
    first = false;
  }
  return s + ")";
}

std::string memory_grid(const MemoryInputs& base) {
  struct Row {
    const char* name;
    bool lora, eight_bit, gc, fused, nf4;
  };
  const Row rows[] = {
      {"full, fp32 Adam", false, false, false, false, false}, {"full, 8-bit Adam", false, true, false, false, false},
      {"full, 8-bit Adam, GC", false, true, true, false, false}, {"full, 8-bit Adam, GC, fused", false, true, true, true, false},
      {"LoRA", true, false, false, false, false},              {"LoRA, GC", true, false, true, false, false},
      {"LoRA, GC, fused", true, false, true, true, false},     {"QLoRA", true, false, false, false, true},
      {"QLoRA, GC", true, false, true, false, true},           {"QLoRA, GC, fused", true, false, true, true, true},
  };
  LoraOptions lora = base.lora ? *base.lora : LoraOptions{};
  if (!base.lora) lora.target_modules = {"all-linear"}, lora.r = 16, lora.lora_dropout = 0;
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "  %-30s %11s %11s %11s %11s %11s\n", "", "weights", "trainable", "optimizer",
                "activations", "peak");
  o << line;
  for (const Row& r : rows) {
    MemoryInputs in = base;
    in.lora = r.lora ? std::optional<LoraOptions>(lora) : std::nullopt;
    in.eight_bit = r.eight_bit;
    in.gradient_checkpointing = r.gc;
    in.fused_attention = r.fused;
    in.nf4 = r.nf4;
    const MemoryEstimate e = estimate_memory(in);
    auto part = [&](const char* name) {
      for (const auto& p : e.parts)
        if (p.name == name) return p.bytes;
      return int64_t{0};
    };
    std::snprintf(line, sizeof line, "  %-30s %11s %11s %11s %11s %11s\n", r.name, format_bytes(part("base weights")).c_str(),
                  format_bytes(part("trainable parameters") + part("gradient buffer")).c_str(),
                  format_bytes(part("optimizer state")).c_str(), format_bytes(part("activations")).c_str(),
                  format_bytes(e.total).c_str());
    o << line;
  }
  return o.str();
}

int64_t largest_micro_batch(MemoryInputs in, int64_t max_micro_batch, int64_t budget) {
  int64_t best = 0;
  for (int64_t b = 1; b <= std::max<int64_t>(1, max_micro_batch); ++b) {
    in.micro_batch = b;  // every size: a tensor that passes the block pool's threshold can lower the estimate
    const int64_t total = estimate_memory(in).total;
    if (total <= budget) best = b;
    // Such a dip is a fraction of the activations, which grow with b: past twice the budget no
    // larger size fits (and a global batch of millions is not scanned one size at a time).
    if (total / 2 > budget) break;
  }
  return best;
}

namespace {
int64_t kib_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  return -1;
}
}  // namespace

int64_t process_resident_bytes() { return kib_field("/proc/self/status", "VmRSS:"); }

int64_t available_memory_bytes() {
  const int64_t avail = kib_field("/proc/meminfo", "MemAvailable:");
  if (avail < 0) return -1;
  return avail + std::max<int64_t>(0, process_resident_bytes());
}

}  // namespace ringtune
