// Packed-batch loss; see loss.h.
#include "src/train/loss.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/cpu_bf16.h"  // defines: widens
#include "model/llama.h"
#include "src/train/packing.h"
#include "src/train/xent_kernel.h"

namespace ringtune {

namespace {

int64_t g_chunk_rows = 0;  // set_loss_chunk_rows

torch::Tensor cross_entropy_sum(LlamaForCausalLMImpl& model, const torch::Tensor& hidden, const torch::Tensor& labels) {
  return torch::nn::functional::cross_entropy(
      model.project(hidden), labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

// Rows of hidden/labels in chunks of loss_chunk_rows(vocab): `each` gets every chunk (hidden rows, labels).
template <typename F>
void for_each_chunk(LlamaForCausalLMImpl& model, const torch::Tensor& hidden, const torch::Tensor& labels, F each) {
  const int64_t n = hidden.size(0), step = loss_chunk_rows(model.config().vocab_size);
  for (int64_t i = 0; i < n; i += step) {
    const int64_t end = std::min(n, i + step);
    each(hidden.slice(0, i, end), labels.slice(0, i, end));
  }
}

// The plain chunked sum (kept in the graph when gradients are on).
torch::Tensor chunked_sum(LlamaForCausalLMImpl& model, const torch::Tensor& hidden, const torch::Tensor& labels) {
  auto total = torch::zeros({}, hidden.options().dtype(torch::kFloat32));
  for_each_chunk(model, hidden, labels,
                 [&](const torch::Tensor& h, const torch::Tensor& y) { total = total + cross_entropy_sum(model, h, y); });
  return total;
}

// The cross-entropy of the supervised rows, chunk by chunk, never holding more than one chunk of
// logits [rows, vocab]: the forward pass keeps only the hidden states, and the backward pass
// recomputes each chunk's logits (with the same dropout masks: the generator state is saved) and
// back-propagates it at once, into the hidden states and the output layer's trainable parameters.
// The liger/torchtune "chunked linear cross-entropy", as an autograd function.
struct ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& labels, int64_t model_ptr) {
    auto& model = *reinterpret_cast<LlamaForCausalLMImpl*>(model_ptr);
    auto gen = at::globalContext().defaultGenerator(hidden.device());
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      ctx->saved_data["rng"] = gen.get_state();
    }
    ctx->saved_data["model"] = model_ptr;
    ctx->save_for_backward({hidden, labels});
    torch::NoGradGuard no_grad;
    return chunked_sum(model, hidden, labels);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto& model = *reinterpret_cast<LlamaForCausalLMImpl*>(ctx->saved_data["model"].toInt());
    const auto& hidden = saved[0];
    const auto& labels = saved[1];
    auto gen = at::globalContext().defaultGenerator(hidden.device());
    torch::Tensor now;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      now = gen.get_state();
      gen.set_state(ctx->saved_data["rng"].toTensor());
    }
    std::vector<torch::Tensor> grads;
    for_each_chunk(model, hidden, labels, [&](const torch::Tensor& chunk, const torch::Tensor& y) {
      auto h = chunk.detach().requires_grad_(true);
      torch::Tensor loss;
      {
        torch::AutoGradMode grad_on(true);
        loss = cross_entropy_sum(model, h, y);
      }
      torch::autograd::backward({loss}, {grad_out[0]});
      grads.push_back(h.grad());
    });
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now);
    }
    return {torch::cat(grads), torch::Tensor(), torch::Tensor()};
  }
};

// Sum over rows of the cross-entropy of logits [rows, V] (float32 or bf16, contiguous, CPU)
// against y, each row replaced by softmax - one-hot: the fused kernel, rows split over threads,
// the per-row losses summed in double in row order (the same total for any thread count).
double fused_cross_entropy_grad(torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t rows = logits.size(0), V = logits.size(1);
  const auto y = labels.to(torch::kInt64).contiguous();
  const int64_t* yp = y.data_ptr<int64_t>();
  if (rows > 0) {
    const int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
    if (lo < 0 || hi >= V)
      throw std::out_of_range("cross-entropy: label " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                              std::to_string(V));
  }
  std::vector<float> loss(static_cast<size_t>(rows));
  const bool bf16 = logits.scalar_type() == torch::kBFloat16;
  void* x = logits.data_ptr();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    if (bf16)
      xent_grad_rows_bf16(static_cast<uint16_t*>(x), V, yp, r0, r1, loss.data());
    else
      xent_grad_rows_f32(static_cast<float*>(x), V, yp, r0, r1, loss.data());
  });
  double total = 0;
  for (const float l : loss) total += l;
  return total;
}

// The same loss when the output layer has nothing to train (LoRA on the body, the usual case):
// the gradient with respect to the hidden states is computed in the forward pass, chunk by chunk,
// from the logits already there, d loss / d logits = softmax - onehot, so backward is one
// multiplication by the incoming scale instead of a second pass through the output layer
// (2·vocab·hidden FLOPs per supervised token: ~16% of a LoRA step on a 32k-vocabulary model with
// d=512). On the CPU the loss and that gradient come from one fused pass over each row of logits
// in the matmul's dtype (fused_cross_entropy_grad); elsewhere from libtorch's log_softmax and
// nll_loss, the float32 softmax minus one-hot cast to the matmul's dtype (what autograd through
// cross_entropy would back-propagate).
struct FrozenHeadCrossEntropy : public torch::autograd::Function<FrozenHeadCrossEntropy> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& labels, int64_t model_ptr) {
    auto& model = *reinterpret_cast<LlamaForCausalLMImpl*>(model_ptr);
    torch::NoGradGuard no_grad;
    const auto& w = model.lm_head_weight();
    const bool fused = hidden.device().is_cpu() &&
                       (hidden.scalar_type() == torch::kFloat32 || hidden.scalar_type() == torch::kBFloat16);
    auto total = torch::zeros({}, hidden.options().dtype(torch::kFloat32));
    double fused_total = 0;
    auto grad = torch::empty_like(hidden);
    const bool wide = fused && widens(hidden);  // bf16 on a CPU without bf16 products (model/cpu_bf16.h)
    int64_t at = 0;
    for_each_chunk(model, hidden, labels, [&](const torch::Tensor& h, const torch::Tensor& y) {
      if (fused) {
        // The logits in the matmul's dtype, replaced in place by d loss / d logits
        // (src/train/xent_kernel.h), then times W into the hidden states' gradient.
        auto out = grad.narrow(0, at, h.size(0));
        if (!wide) {
          auto logits = model.head_product(h).contiguous();
          fused_total += fused_cross_entropy_grad(logits, y);
          at::mm_out(out, logits, w);
        } else {
          // Widened: W in tiles of vocabulary rows, each widened as it is used (float32 tiles of at
          // most 32 MiB), logits rounded to bf16 per tile, d loss / d hidden summed over the tiles
          // in float32 and rounded once.
          const int64_t rows = h.size(0), vocab = w.size(0);
          const int64_t tile = std::max<int64_t>(1, (int64_t{8} << 20) / std::max(rows, w.size(1)));
          const auto h32 = h.to(torch::kFloat32);
          auto logits = torch::empty({rows, vocab}, h.options());
          for (int64_t v = 0; v < vocab; v += tile) {
            const int64_t n = std::min(tile, vocab - v);
            logits.narrow(1, v, n).copy_(torch::mm(h32, w.narrow(0, v, n).to(torch::kFloat32).t()));
          }
          fused_total += fused_cross_entropy_grad(logits, y);
          auto sum = torch::zeros({rows, w.size(1)}, h32.options());
          for (int64_t v = 0; v < vocab; v += tile) {
            const int64_t n = std::min(tile, vocab - v);
            sum.addmm_(logits.narrow(1, v, n).to(torch::kFloat32), w.narrow(0, v, n).to(torch::kFloat32));
          }
          out.copy_(sum);
        }
      } else {
        auto logp = torch::log_softmax(model.project(h), 1);
        total = total + torch::nll_loss(logp, y, {}, at::Reduction::Sum);
        auto g = logp.exp_();  // softmax
        g.scatter_add_(1, y.unsqueeze(1), torch::full({y.size(0), 1}, -1.0f, g.options()));
        // As autograd through project(): the float32 gradient cast to the matmul's dtype, times W.
        grad.narrow(0, at, h.size(0)).copy_(torch::matmul(g.to(h.scalar_type()), w));
      }
      at += h.size(0);
    });
    if (fused) total.fill_(fused_total);
    ctx->save_for_backward({grad});
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto grad = ctx->get_saved_variables()[0];
    // The scale (1 / supervised tokens) applied in float32: rounded to bf16 it would bias every
    // gradient of a bf16 run by up to 2^-9 (for float32 gradients the casts are no-ops).
    return {(grad.to(torch::kFloat32) * grad_out[0].to(torch::kFloat32)).to(grad.scalar_type()), torch::Tensor(),
            torch::Tensor()};
  }
};

// Whether the output layer (lm_head or the tied embedding) has no trainable parameter.
bool head_is_frozen(LlamaForCausalLMImpl& model) {
  if (model.tied_head_lora) return false;
  if (model.lm_head && model.lm_head->has_lora()) return false;
  return !model.lm_head_weight().requires_grad();
}

}  // namespace

int64_t loss_chunk_rows(int64_t vocab) {
  if (g_chunk_rows > 0) return g_chunk_rows;
  return std::max<int64_t>(1, (int64_t{64} << 20) / std::max<int64_t>(vocab, 1));
}

void set_loss_chunk_rows(int64_t rows) { g_chunk_rows = rows; }

at::Tensor batch_loss_sum(LlamaForCausalLM& model, const SequenceBatch& batch) {
  auto t = batch.tensors();
  const auto device = model->model->embed_tokens->weight.device();
  auto tokens = t[0].to(device), positions = t[1].to(device), segments = t[2].to(device),
       labels = t[3].to(device);
  auto hidden = model->forward_hidden(tokens, positions, AttentionMask{segments});
  // Only the supervised positions need logits.
  auto flat_labels = labels.reshape({-1});
  const auto rows = (flat_labels != kIgnoreLabel).nonzero().reshape({-1});
  auto h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, rows);
  auto y = flat_labels.index_select(0, rows);
  LlamaForCausalLMImpl& impl = *model.get();
  if (rows.numel() == 0)  // nothing supervised: zero, still connected to every trainable parameter
    return impl.project(hidden.reshape({-1, hidden.size(-1)}).slice(0, 0, 1)).sum() * 0;
  if (torch::GradMode::is_enabled() && h.requires_grad())
    return head_is_frozen(impl) ? FrozenHeadCrossEntropy::apply(h, y, reinterpret_cast<int64_t>(&impl))
                                : ChunkedCrossEntropy::apply(h, y, reinterpret_cast<int64_t>(&impl));
  // No gradient, or only the output layer trains (a frozen body): plain chunks, each kept for
  // backward in the second case.
  return chunked_sum(impl, h, y);
}

}  // namespace ringtune
