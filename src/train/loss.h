// Loss of a batch of packed sequences: the sum of next-token cross-entropies over supervised
// positions. The trainer divides by the supervised-token count of the whole optimizer step (all
// micro-batches, all ranks), so the loss is a mean over tokens, not a mean of per-batch means.
// defines: batch_loss_sum
#pragma once

namespace at {
class Tensor;
}

namespace ringtune {

class LlamaForCausalLM;
struct SequenceBatch;

// Sum of cross-entropy over labels != kIgnoreLabel, float32 scalar, differentiable.
at::Tensor batch_loss_sum(LlamaForCausalLM& model, const SequenceBatch& batch);

}  // namespace ringtune
