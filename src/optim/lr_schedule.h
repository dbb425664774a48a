// Learning-rate schedules with linear warmup, as Hugging Face transformers' get_*_schedule_with_
// warmup: constant, linear decay to 0, cosine decay to 0 (half a period).
// defines: lr_at
#pragma once
#include <cstdint>
#include <string>

namespace ringtune {

// Learning rate for optimizer step `step` (0-based) of `total_steps`. type: constant | linear |
// cosine; anything else is an Error.
double lr_at(const std::string& type, double peak, int64_t step, int64_t warmup, int64_t total_steps);

}  // namespace ringtune
