// Token ids and the per-token loss mask of a rendered prompt, and of plain text for causal LM.
// defines: TokenizedSample, loss_mask_from_offsets, tokenize_rendered, tokenize_causal_text,
//          tokenize_causal_rendered
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "src/data/prompt_format.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

// In every mask produced here the first token carries no loss: nothing before it predicts it (the
// bos, or for formats whose bos text is part of the first template, such as llama2's "<s>[INST]",
// that first "<s>"). DatasetReader re-applies this after truncate_left.
struct TokenizedSample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // 1: the token is a target of the loss
  int64_t supervised_count() const;
};

// A token carries loss iff its position lies inside a supervised span. Its position is its start
// offset, moved past any ASCII whitespace at the front of the token's own bytes (up to the next
// token's start): SentencePiece's "▁Paris" and byte-level BPE's "ĠParis" begin at the space that
// a template such as " {instruction}</s>" puts before the content, yet they are the assistant's
// first word. A token that is only whitespace keeps its start offset.
std::vector<uint8_t> loss_mask_from_offsets(const std::vector<int64_t>& offsets, std::string_view text,
                                            const std::vector<ByteSpan>& supervised);

// Encodes rendered.segments() and computes the mask from rendered.supervised.
TokenizedSample tokenize_rendered(const Tokenizer& tokenizer, const RenderedPrompt& rendered);

// Causal LM on one text: [bos if the tokenizer has one] + encode(text) + [eos if it has one];
// every token but the bos carries loss, or (supervised_from > 0, a prompt/completion) the tokens
// from byte supervised_from on (placed as loss_mask_from_offsets places them) and the eos. Text
// never becomes special tokens unless allow_special.
TokenizedSample tokenize_causal_text(const Tokenizer& tokenizer, std::string_view text,
                                     bool allow_special = false, size_t supervised_from = 0);

// Causal LM on a conversation (task: causal_lm), rendered with TrainOn::all: its ids and mask, the
// tokenizer's bos prepended (not supervised) when the format has no bos text of its own and the
// first token is not already the bos, and the tokenizer's eos appended (supervised).
TokenizedSample tokenize_causal_rendered(const Tokenizer& tokenizer, const RenderedPrompt& rendered,
                                         bool format_has_bos);

}  // namespace ringtune
