// tokenizer.json decoders: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace and Sequence.
// A decoder rewrites the list of token strings; decoding joins what comes out.
// defines: Decoder, make_decoder
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace ringtune {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Builds the decoder described by `config` (null gives nullptr). `*added_tokens` holds the
// contents of the added tokens, which the ByteLevel decoder passes through unchanged (as the
// reference does); it must outlive the decoder and may grow later. Unsupported types are an
// InputError: `<file>: unsupported decoder type "CTC"`.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config, const std::string& file,
                                      const std::unordered_set<std::string>* added_tokens);

}  // namespace ringtune
