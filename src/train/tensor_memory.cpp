// Live-tensor accounting for diagnostics; see tensor_memory.h.
#include "src/train/tensor_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace ringtune {

namespace {

#if TORCH_VERSION_MAJOR >= 2
using ReportedTotal = size_t;  // the totals' type changed in libtorch 2
#else
using ReportedTotal = int64_t;
#endif

struct Reporter : c10::MemoryReportingInfoBase {
  int64_t live = 0, peak = 0;
  void reportMemoryUsage(void*, int64_t size, ReportedTotal, ReportedTotal, c10::Device device) override {
    if (!device.is_cpu()) return;
    live += size;
    peak = std::max(peak, live);
  }
  bool memoryProfilingEnabled() const override { return true; }
};

std::shared_ptr<Reporter> g_reporter;

}  // namespace

struct TensorMemoryTrace::Impl {
  std::optional<c10::DebugInfoGuard> guard;
};

TensorMemoryTrace::TensorMemoryTrace() {
  const char* v = std::getenv("RINGTUNE_TRACE_MEMORY");
  if (!v || std::strcmp(v, "1") != 0) return;
  impl_ = std::make_unique<Impl>();
  g_reporter = std::make_shared<Reporter>();
  impl_->guard.emplace(c10::DebugInfoKind::PROFILER_STATE, g_reporter);
}

TensorMemoryTrace::~TensorMemoryTrace() {
  if (impl_) g_reporter.reset();
}

void tensor_memory_mark(const char* phase) {
  if (!g_reporter) return;
  std::string heap;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  const struct mallinfo2 mi = mallinfo2();
  heap = fmt::format("; C heap {:.1f} MiB ({:.1f} free), mmapped {:.1f} MiB", mi.arena / 1048576.0,
                     mi.fordblks / 1048576.0, mi.hblkhd / 1048576.0);
#endif
  spdlog::info("tensor memory at {}: live {:.1f} MiB, peak since the previous mark {:.1f} MiB{}", phase,
               g_reporter->live / 1048576.0, g_reporter->peak / 1048576.0, heap);
  g_reporter->peak = g_reporter->live;
}

}  // namespace ringtune
