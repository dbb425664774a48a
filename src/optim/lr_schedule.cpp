// Learning-rate schedules; see lr_schedule.h.
#include "src/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "src/error.h"

namespace ringtune {

double lr_at(const std::string& type, double peak, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return peak * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  if (type == "constant") return peak;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (type == "linear") return peak * std::max(0.0, 1.0 - progress);
  if (type == "cosine") return peak * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  throw Error("unknown lr_scheduler_type " + type);
}

}  // namespace ringtune
