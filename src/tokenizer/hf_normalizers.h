// tokenizer.json normalizers: Prepend, Replace, NFC, NFD and Sequence. Each maps a NormalizedText
// to a new one, keeping track of where every byte came from.
// defines: Normalizer, make_normalizer
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "src/tokenizer/normalized_text.h"

namespace ringtune {

struct JsonContext;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual NormalizedText normalize(NormalizedText in) const = 0;
};

// Builds the normalizer described by `config` (a JSON object; null gives nullptr). Unsupported
// types are an InputError: `<file>: unsupported normalizer type "NFKC"`.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& file);

}  // namespace ringtune
