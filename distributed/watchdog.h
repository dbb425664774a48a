// The collective watchdog: ends a job whose ranks wait in a collective that makes no progress
// (a network partition, a hung or vanished peer) instead of letting it hold its allocation for
// ever.
//
// How it decides. Every rank counts progress (distributed/progress.h: completed collectives and
// units of local work). A thread on each rank sends its count, its step and the collective it is
// waiting in (if any) to every other rank as a small UDP datagram several times per timeout, on a
// socket of its own (no MPI call from the thread, so a stalled MPI cannot stall the watchdog, and
// MPI_THREAD_FUNNELED suffices). A rank trips when it has waited in one collective for at least
// `timeout_s` and, for `timeout_s`, neither it nor any peer it hears from has made progress.
// A peer that is slow but working (rank 0 writing a long checkpoint while the others wait in the
// barrier after it) keeps reporting progress, so it never trips anyone; a peer cut off by a
// partition, dead, or stuck inside one call stops counting, and every rank that waits on it trips
// after `timeout_s` (the partitioned rank too: it hears nobody and makes no progress).
//
// A tripped rank logs one line (the collective, its size, the step, how long, and the peers it has
// not heard from or that are elsewhere) through `report`, then MPI_Abort; if the abort does not
// end the process within 5 s (a daemon cut off by the partition), the process exits by itself.
// Exit code 1. `resume: auto` continues from the last checkpoint.
//
// Addresses: each rank binds a UDP socket on all interfaces (an ephemeral port) and all-gathers
// its host's non-loopback IPv4 addresses; an address found on two different hosts (a docker0
// bridge on every node) is not used; a host with no other address uses 127.0.0.1. Datagrams carry
// a job nonce, so strays from other jobs are ignored. Datagrams lost (UDP) only delay a report.
// defines: Watchdog, WatchdogOptions
#pragma once
#include <functional>
#include <memory>
#include <string>

namespace ringtune {

class ProcessGroup;

struct WatchdogOptions {
  double timeout_s = 600;  // <= 0: no watchdog
  // How often a rank reports to its peers; 0: timeout_s / 10, clamped to [0.05, 5] s.
  double interval_s = 0;
};

class Watchdog {
 public:
  // Collective (all-gathers the ranks' addresses). Starts nothing for a world of one, without
  // MPI, or with timeout_s <= 0. Throws std::runtime_error if the socket cannot be set up.
  // `report` gets the line of a trip (then the job is aborted); `warn` gets, once, the peers not
  // heard from within 10 heartbeat intervals of the start (UDP filtered between the nodes: the
  // watchdog then sees only the progress of the peers it hears, and a long wait on a silent
  // peer's local work can trip it).
  Watchdog(const ProcessGroup& group, const WatchdogOptions& options,
           std::function<void(const std::string&)> report, std::function<void(const std::string&)> warn = {});
  ~Watchdog();  // stops the thread (not collective)
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  bool running() const;
  // One line for the start-up log: timeout, interval, how peers are reached.
  std::string describe() const;

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace ringtune
