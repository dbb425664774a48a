// Loss of a batch of packed sequences: the sum of next-token cross-entropies over supervised
// positions. The trainer divides by the supervised-token count of the whole optimizer step (all
// micro-batches, all ranks), so the loss is a mean over tokens, not a mean of per-batch means.
// defines: batch_loss_sum
#pragma once
#include <cstdint>

namespace at {
class Tensor;
}

namespace ringtune {

class LlamaForCausalLM;
struct SequenceBatch;

// Sum of cross-entropy over labels != kIgnoreLabel, float32 scalar, differentiable. Logits are
// computed only for the supervised positions, in chunks of about 64 Mi values (rows x vocab), and
// recomputed chunk by chunk in the backward pass, so [batch, length, vocab] never exists at once.
at::Tensor batch_loss_sum(LlamaForCausalLM& model, const SequenceBatch& batch);

// Rows of logits computed at once for a vocabulary of `vocab`: about 64 Mi values (256 MB in
// float32), at least one row (the memory estimate counts them).
int64_t loss_chunk_rows(int64_t vocab);
// Tests: rows per chunk instead of the 64 Mi / vocab default (0 restores it).
void set_loss_chunk_rows(int64_t rows);

}  // namespace ringtune
