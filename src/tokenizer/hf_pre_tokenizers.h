// tokenizer.json pre-tokenizers: Split (PCRE2 regex or literal), ByteLevel, Metaspace and
// Sequence. A pre-tokenizer cuts a section's NormalizedText into pieces (spans) that the model
// encodes separately; ByteLevel and Metaspace may also insert or replace text.
// defines: PreTokenizer, PreTokenizerInfo, make_pre_tokenizer
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "src/tokenizer/normalized_text.h"

namespace ringtune {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Re-cuts `spans` (pieces of `text`, in order, non-overlapping); may replace `text`, in which
  // case the spans refer to the new text.
  virtual void pre_tokenize(NormalizedText& text, std::vector<TextSpan>& spans) const = 0;
};

// What the model needs to know about the pre-tokenizer chain.
struct PreTokenizerInfo {
  bool byte_level = false;  // a ByteLevel pre-tokenizer maps bytes to the GPT-2 alphabet
};

// Builds the pre-tokenizer described by `config` (null gives nullptr). Unsupported types are an
// InputError: `<file>: unsupported pre_tokenizer type "Whitespace"`. ByteLevel must come last.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config,
                                                 const std::string& file, PreTokenizerInfo* info);

}  // namespace ringtune
