// Diagnostics: with RINGTUNE_TRACE_MEMORY=1 in the environment, the bytes of live CPU tensors are
// counted through c10's memory-reporting hook (the one the profiler uses) on the thread that
// starts the trace, and each mark logs the live bytes and the peak since the previous mark. For
// comparing the memory estimate's terms (src/train/memory_estimate.h) with what libtorch holds,
// apart from the C library's heap. Off (and free) otherwise.
// defines: TensorMemoryTrace, tensor_memory_mark
#pragma once
#include <memory>

namespace ringtune {

class TensorMemoryTrace {
 public:
  TensorMemoryTrace();  // starts counting on this thread when RINGTUNE_TRACE_MEMORY=1
  ~TensorMemoryTrace();
  TensorMemoryTrace(const TensorMemoryTrace&) = delete;
  TensorMemoryTrace& operator=(const TensorMemoryTrace&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Logs "tensor memory at PHASE: live X MiB, peak since the previous mark Y MiB" when tracing.
void tensor_memory_mark(const char* phase);

}  // namespace ringtune
