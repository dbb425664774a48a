// What the watchdog's bookkeeping costs the training thread (distributed/progress.h): a
// CollectiveScope around each collective and a note_progress per unit of work. Prints ns per call
// (best of 5 runs of 10^7), for bench/watchdog_overhead.sh's per-step estimate.
#include <chrono>
#include <cstdio>

#include "distributed/progress.h"

int main() {
  using Clock = std::chrono::steady_clock;
  const int n = 10000000;
  double note = 1e30, scope = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) ringtune::note_progress();
    note = std::min(note, std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n);
    t0 = Clock::now();
    for (int i = 0; i < n; ++i) ringtune::CollectiveScope waiting("all_reduce", i);
    scope = std::min(scope, std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n);
  }
  std::printf("note_progress %.2f ns/call, CollectiveScope enter+leave %.2f ns/call (progress %llu)\n", note, scope,
              static_cast<unsigned long long>(ringtune::read_progress().progress));
  return 0;
}
