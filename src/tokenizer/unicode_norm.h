// Unicode canonical normalization (NFC, NFD) of a NormalizedText, for the NFC/NFD normalizers of
// tokenizer.json files (Qwen2 uses NFC). Tables come from unicode_tables.inc (generated).
// defines: unicode_normalize
#pragma once
#include "src/tokenizer/normalized_text.h"

namespace ringtune {

// NFC when `compose`, else NFD. Each output character points at the original offset of the
// character it came from (offsets stay non-decreasing). `in.text` must be valid UTF-8.
NormalizedText unicode_normalize(NormalizedText in, bool compose);

}  // namespace ringtune
