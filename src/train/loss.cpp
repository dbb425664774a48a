// Packed-batch loss; see loss.h.
#include "src/train/loss.h"

#include <torch/torch.h>

#include "model/llama.h"
#include "src/train/packing.h"

namespace ringtune {

at::Tensor batch_loss_sum(LlamaForCausalLM& model, const SequenceBatch& batch) {
  auto t = batch.tensors();
  const auto device = model->model->embed_tokens->weight.device();
  auto tokens = t[0].to(device), positions = t[1].to(device), segments = t[2].to(device),
       labels = t[3].to(device);
  auto logits = model->forward(tokens, positions, AttentionMask{segments});
  const int64_t v = logits.size(-1);
  return torch::nn::functional::cross_entropy(
      logits.reshape({-1, v}), labels.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel).reduction(torch::kSum));
}

}  // namespace ringtune
