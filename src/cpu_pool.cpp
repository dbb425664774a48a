// The CPU block pool; see cpu_pool.h.
#include "src/cpu_pool.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

namespace ringtune {

namespace {

constexpr size_t kPage = 4096;

struct Pool {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;  // block -> mapped bytes
  // Cached blocks by size (with the age they were freed at), and their ages, oldest first.
  std::multimap<size_t, std::pair<void*, uint64_t>> by_size;
  std::map<uint64_t, std::multimap<size_t, std::pair<void*, uint64_t>>::iterator> by_age;
  uint64_t clock = 0;
  int64_t peak_live = 0, live_at_trim = 0;  // the most bytes live since the last trim; those live at it
  CpuPoolStats stats;

  // A block of at least n bytes, or nullptr when the system has none to map.
  void* take(size_t n) {
    const size_t want = (n + kPage - 1) / kPage * kPage;
    std::lock_guard<std::mutex> lock(mu);

    // The smallest cached size that fits, and of those blocks the one freed last (the warmest in
    // the caches; equal keys sit in the order they were inserted).
    auto fit = by_size.lower_bound(want);
    if (fit != by_size.end()) fit = std::prev(by_size.upper_bound(fit->first));
    if (fit != by_size.end() && fit->first <= want + want / 8) {
      void* p = fit->second.first;
      const size_t size = fit->first;
      by_age.erase(fit->second.second);
      by_size.erase(fit);
      live.emplace(p, size);
      stats.cached -= static_cast<int64_t>(size);
      stats.live += static_cast<int64_t>(size);
      ++stats.reuses;
      return p;
    }
    // Room first, when live + cached + this block would pass the most bytes live at once since
    // the last trim, plus 1/16 of what that peak added to the bytes live then: the least recently
    // freed blocks go, as many as needed.
    peak_live = std::max(peak_live, stats.live + static_cast<int64_t>(want));
    const int64_t cap = peak_live + (peak_live - live_at_trim) / 16;
    while (stats.live + stats.cached + static_cast<int64_t>(want) > cap && !by_age.empty()) unmap_oldest();
    void* p = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED && !by_age.empty()) {  // out of memory: everything cached goes, then once more
      while (!by_age.empty()) unmap_oldest();
      p = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (p == MAP_FAILED) return nullptr;
    if (want >= (size_t{2} << 20)) ::madvise(p, want, MADV_HUGEPAGE);
    live.emplace(p, want);
    stats.live += static_cast<int64_t>(want);
    stats.peak = std::max(stats.peak, stats.live + stats.cached);
    ++stats.maps;
    return p;
  }

  // Unmaps the least recently freed cached block (the caller holds the lock).
  void unmap_oldest() {
    const auto oldest = by_age.begin();
    const auto block = oldest->second;
    ::munmap(block->second.first, block->first);
    stats.cached -= static_cast<int64_t>(block->first);
    ++stats.unmaps;
    by_size.erase(block);
    by_age.erase(oldest);
  }

  // Unmaps every cached block; the live bytes now are the new reference for the cap.
  void trim() {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [size, block] : by_size) {
      ::munmap(block.first, size);
      ++stats.unmaps;
    }
    by_size.clear();
    by_age.clear();
    stats.cached = 0;
    peak_live = live_at_trim = stats.live;
  }

  // Takes a block back into the cache; false when p is not one of the pool's blocks.
  bool give_back(void* p) {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = live.find(p);
    if (it == live.end()) return false;
    const size_t size = it->second;
    live.erase(it);
    const uint64_t age = clock++;
    by_age.emplace(age, by_size.emplace(size, std::make_pair(p, age)));
    stats.live -= static_cast<int64_t>(size);
    stats.cached += static_cast<int64_t>(size);
    return true;
  }
};

// Never destroyed: tensors may be freed during static destruction.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

void delete_block(void* p) {
  c10::profiledCPUMemoryReporter().Delete(p);
  pool().give_back(p);
}

// raw_allocate()'s pointers of either kind.
void raw_delete(void* p) {
  c10::profiledCPUMemoryReporter().Delete(p);
  if (!pool().give_back(p)) c10::free_cpu(p);  // a small one: what the default allocator's deleter does
}

class PoolAllocator final : public c10::Allocator {
 public:
  explicit PoolAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return allocate_block(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return allocate_block(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &raw_delete; }

 private:
  c10::DataPtr allocate_block(size_t n) const {
    if (static_cast<int64_t>(n) < cpu_pool_min_bytes) return fallback_->allocate(n);
    void* p = pool().take(n);
    if (p == nullptr) {
      const int err = errno;
      c10::profiledCPUMemoryReporter().OutOfMemory(n);
      TORCH_CHECK(false, "not enough memory: you tried to allocate ", n, " bytes (", std::strerror(err), ")");
    }
    c10::profiledCPUMemoryReporter().New(p, n);
    return {p, p, &delete_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::Allocator* fallback_;
};

bool g_installed = false;

}  // namespace

bool install_cpu_pool() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* v = std::getenv("RINGTUNE_CPU_POOL");
    if (v && std::strcmp(v, "0") == 0) return;
    // Owned by libtorch from here on (SetCPUAllocator's contract); priority above the default's.
    c10::SetCPUAllocator(new PoolAllocator(c10::GetCPUAllocator()), 1);
    g_installed = true;
  });
  return g_installed;
}

bool cpu_pool_installed() { return g_installed; }

void cpu_pool_trim() {
  if (g_installed) pool().trim();
}

CpuPoolStats cpu_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

}  // namespace ringtune
