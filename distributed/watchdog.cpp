// The collective watchdog (watchdog.h) and the progress counters it reads (progress.h).
#include "distributed/watchdog.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "distributed/process_group.h"
#include "distributed/process_info.h"  // defines: host_name
#include "distributed/progress.h"

namespace ringtune {

namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() { return steady_ns(); }

constexpr uint32_t kMagic = 0x52545744;  // "RTWD"

// One heartbeat. Ranks of one job run one binary, so the layout (host byte order) is shared.
struct Beat {
  uint32_t magic;
  int32_t rank;
  uint64_t nonce;
  uint64_t progress;
  int64_t step;
  uint64_t collective;  // number of the collective waited in (0: none)
  int64_t waited_ms;
  char op[24];
};

struct Peer {
  std::string host;
  std::vector<sockaddr_in> addresses;
  int64_t heard_ns = 0;      // last datagram
  int64_t progress_ns = 0;   // last time its count (last.progress) changed, as seen here
  Beat last{};
  bool heard = false;
};

std::string fmt_s(double s) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f", s);
  return b;
}

// The host's IPv4 addresses that are up, loopback excluded.
std::vector<std::string> host_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN];
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf))) out.emplace_back(buf);
  }
  freeifaddrs(list);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep))
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace

// ---- the watchdog ----

struct Watchdog::State {
  const ProcessGroup* group = nullptr;
  double timeout_s = 0, interval_s = 0;
  int rank = 0, world = 1;
  int sock = -1, wake[2] = {-1, -1};
  uint64_t nonce = 0;
  std::string how;  // for describe()
  std::vector<Peer> peers;  // index: rank (this rank's entry unused)
  std::function<void(const std::string&)> report, warn;
  std::thread thread;
  std::atomic<bool> stop{false};

  void run();
  void send_beats(uint64_t progress);
  void receive(int64_t now);
  [[noreturn]] void trip(int64_t now, int64_t idle_ns);
  void end_stuck_launcher();
};

void Watchdog::State::send_beats(uint64_t progress) {
  Beat b{};
  b.magic = kMagic;
  b.rank = rank;
  b.nonce = nonce;
  b.progress = progress;
  const ProgressSnapshot p = read_progress();
  b.step = p.step;
  if (p.op) {
    b.collective = p.collectives;
    b.waited_ms = (now_ns() - p.since_ns) / 1000000;
    std::snprintf(b.op, sizeof(b.op), "%s", p.op);
  }
  for (int r = 0; r < world; ++r) {
    if (r == rank) continue;
    for (const auto& a : peers[r].addresses)  // errors (a link that is down) only lose a beat
      sendto(sock, &b, sizeof(b), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
  }
}

void Watchdog::State::receive(int64_t now) {
  Beat b;
  for (;;) {
    const ssize_t n = recv(sock, &b, sizeof(b), MSG_DONTWAIT);
    if (n < 0) return;
    if (n != static_cast<ssize_t>(sizeof(b)) || b.magic != kMagic || b.nonce != nonce) continue;
    if (b.rank < 0 || b.rank >= world || b.rank == rank) continue;
    Peer& p = peers[b.rank];
    p.heard_ns = now;
    if (!p.heard || b.progress != p.last.progress) p.progress_ns = now;
    p.heard = true;
    b.op[sizeof(b.op) - 1] = '\0';
    p.last = b;
  }
}

void Watchdog::State::trip(int64_t now, int64_t idle_ns) {
  const ProgressSnapshot snap = read_progress();
  const char* op = snap.op;
  const double waited = (now - snap.since_ns) / 1e9;
  std::string msg = "watchdog: rank " + std::to_string(rank) + " (host " + peers[rank].host + ") waited " +
                    fmt_s(waited) + " s in " + (op ? op : "?") + " (" +
                    std::to_string(snap.elements) + " elements, collective #" +
                    std::to_string(snap.collectives) + ") at step " + std::to_string(snap.step + 1) + " and no rank made progress for " +
                    fmt_s(idle_ns / 1e9) + " s (distributed.timeout_s " + fmt_s(timeout_s) + ")";
  // The peers to look at: those not heard from lately, then those waiting elsewhere.
  std::vector<std::string> silent, elsewhere;
  const int64_t stale_ns = static_cast<int64_t>(3 * interval_s * 1e9);
  const uint64_t mine = snap.collectives;
  for (int r = 0; r < world; ++r) {
    if (r == rank) continue;
    const Peer& p = peers[r];
    const std::string who = "rank " + std::to_string(r) + " (host " + p.host + ")";
    if (!p.heard) {
      silent.push_back(who + " never");
    } else if (now - p.heard_ns > stale_ns) {
      std::string last = p.last.collective ? std::string(", last seen in ") + p.last.op : ", last seen working";
      silent.push_back(who + " for " + fmt_s((now - p.heard_ns) / 1e9) + " s" + last);
    } else if (p.last.collective == 0 || p.last.collective != mine) {
      elsewhere.push_back(who + (p.last.collective ? std::string(" waits in ") + p.last.op + " #" +
                                                          std::to_string(p.last.collective)
                                                    : std::string(" is not in a collective")));
    }
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 8) s += " and " + std::to_string(v.size() - 8) + " more";
    return s;
  };
  if (!silent.empty()) msg += "; not heard from " + list(silent);
  if (!elsewhere.empty()) msg += "; " + list(elsewhere);
  if (silent.empty() && elsewhere.empty()) msg += "; every peer waits in the same collective";
  msg += "; aborting the job (resume: auto continues from the last checkpoint)";
  if (report) report(msg);
  end_stuck_launcher();
  // MPI_Abort asks the local daemon to end the job; a daemon cut off by the partition may never
  // answer, so the process also ends by itself.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::fflush(stderr);
    std::_Exit(1);
  }).detach();
  group->abort(1);
}

// The launcher of this rank, if it is OpenMPI's (mpirun on the first host, orted elsewhere), is
// given kLauncherGraceS to end after the abort; then a helper process kills it. Without this,
// mpirun waits for the daemon of a partitioned host (its TCP connection times out only after
// ~15 minutes) and holds the allocation although every rank has ended. Slurm's slurmstepd (srun)
// is never touched: Slurm ends the step itself (--kill-on-bad-exit, SlurmdTimeout).
constexpr int kLauncherGraceS = 20;

namespace {

// Field 22 of /proc/PID/stat (start time in clock ticks) and the command name, or "" if gone.
std::string process_identity(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  std::ifstream in(path);
  std::string stat;
  if (!std::getline(in, stat)) return "";
  const size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return "";
  const std::string comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return comm + " " + field;
}

}  // namespace

void Watchdog::State::end_stuck_launcher() {
  const pid_t parent = getppid();
  const std::string id = process_identity(parent);
  const std::string comm = id.substr(0, id.find(' '));
  if (comm != "mpirun" && comm != "orterun" && comm != "mpiexec" && comm != "orted" && comm != "prterun" &&
      comm != "prted")
    return;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(parent));
  const pid_t child = fork();
  if (child != 0) return;  // the rank goes on to MPI_Abort (a failed fork: no helper)
  // The helper: only async-signal-safe calls from here (the rank has threads). Its own session and
  // no inherited descriptors, so it keeps no pipe of the launcher open and no daemon waits for it.
  setsid();
  prctl(PR_SET_NAME, "rt-watchdog", 0, 0, 0);  // not to be taken for a rank (`ps`, the tests)
  const int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
  }
  if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
    for (int fd = 3; fd < 4096; ++fd) close(fd);
  sleep(kLauncherGraceS);
  // Still the same process (its start time, in the id, rules out a reused pid)?
  const int fd = open(path, O_RDONLY);
  if (fd < 0) _exit(0);
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) _exit(0);
  buf[n] = '\0';
  const char* close_paren = strrchr(buf, ')');
  if (!close_paren) _exit(0);
  int field = 2;
  const char* p = close_paren + 1;
  const char* start = nullptr;
  for (; *p && field < 22; ++p)
    if (*p == ' ' && ++field == 22) start = p + 1;
  if (!start) _exit(0);
  size_t len = 0;
  while (start[len] && start[len] != ' ') ++len;
  const std::string& want = id;  // "comm starttime", built before the fork
  const size_t sp = want.rfind(' ');
  if (want.size() - sp - 1 != len || strncmp(want.c_str() + sp + 1, start, len) != 0) _exit(0);
  kill(parent, SIGKILL);
  _exit(0);
}

void Watchdog::State::run() {
  const int64_t timeout_ns = static_cast<int64_t>(timeout_s * 1e9);
  const int64_t interval_ns = static_cast<int64_t>(interval_s * 1e9);
  const int64_t start = now_ns();
  for (auto& p : peers) p.heard_ns = p.progress_ns = start;
  uint64_t my_progress = read_progress().progress;
  int64_t my_progress_ns = start, next_send = start;
  bool checked_silent = false;
  while (!stop.load()) {
    int64_t now = now_ns();
    const uint64_t progress = read_progress().progress;
    if (progress != my_progress) {
      my_progress = progress;
      my_progress_ns = now;
    }
    if (now >= next_send) {
      send_beats(progress);
      next_send = now + interval_ns;
    }
    pollfd fds[2] = {{sock, POLLIN, 0}, {wake[0], POLLIN, 0}};
    const int wait_ms = static_cast<int>(std::max<int64_t>(1, (next_send - now) / 1000000));
    if (poll(fds, 2, wait_ms) > 0 && (fds[1].revents & POLLIN)) break;
    now = now_ns();
    receive(now);
    if (!checked_silent && now - start >= 10 * interval_ns) {
      checked_silent = true;
      std::string silent;
      int n = 0;
      for (int r = 0; r < world; ++r)
        if (r != rank && !peers[r].heard && n++ < 8)
          silent += (silent.empty() ? "" : ", ") + std::to_string(r) + " (host " + peers[r].host + ")";
      if (n > 0 && warn)
        warn("watchdog: rank " + std::to_string(rank) + " has not heard from rank(s) " + silent +
             (n > 8 ? " and " + std::to_string(n - 8) + " more" : "") + " in " + fmt_s((now - start) / 1e9) +
             " s (UDP between the hosts filtered?); it counts only the progress of the ranks it hears, so a long "
             "wait on their local work may trip it: open UDP between the nodes or set distributed.timeout_s: 0");
    }
    int64_t last_progress = my_progress_ns;
    for (int r = 0; r < world; ++r)
      if (r != rank) last_progress = std::max(last_progress, peers[r].progress_ns);
    const ProgressSnapshot snap = read_progress();
    if (snap.op && now - snap.since_ns >= timeout_ns && now - last_progress >= timeout_ns)
      trip(now, now - last_progress);
  }
}

Watchdog::Watchdog(const ProcessGroup& group, const WatchdogOptions& options,
                   std::function<void(const std::string&)> report, std::function<void(const std::string&)> warn)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.group = &group;
  s.rank = group.rank();
  s.world = group.size();
  s.timeout_s = options.timeout_s;
  s.interval_s = options.interval_s > 0 ? options.interval_s : std::clamp(options.timeout_s / 10, 0.05, 5.0);
  s.report = std::move(report);
  s.warn = std::move(warn);
  if (!group.has_mpi() || s.world == 1 || !(options.timeout_s > 0)) {
    s.how = !(options.timeout_s > 0) ? "off (distributed.timeout_s 0)" : "off (one process)";
    return;
  }
  // Every rank takes part in the all-gather below, even one whose socket failed, so that all
  // ranks agree on whether the watchdog runs.
  std::string err;
  uint16_t port = 0;
  s.sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s.sock < 0) {
    err = std::string("socket: ") + std::strerror(errno);
  } else {
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof(any);
    if (bind(s.sock, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0 ||
        getsockname(s.sock, reinterpret_cast<sockaddr*>(&any), &len) != 0)
      err = std::string("bind: ") + std::strerror(errno);
    port = ntohs(any.sin_port);
  }
  if (err.empty() && pipe2(s.wake, O_CLOEXEC) != 0) err = std::string("pipe: ") + std::strerror(errno);
  std::random_device rd;
  const uint64_t nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(now_ns());
  std::string addrs;
  for (const auto& a : host_addresses()) addrs += a + ",";
  const auto all = group.all_gather_string(std::to_string(err.empty() ? port : 0) + " " + std::to_string(nonce) +
                                           " " + host_name() + " " + (addrs.empty() ? "-" : addrs));
  std::vector<std::vector<std::string>> fields(all.size());
  bool ok = true;
  for (size_t r = 0; r < all.size(); ++r) {
    fields[r] = split(all[r], ' ');
    if (fields[r].size() != 4 || fields[r][0] == "0") ok = false;
  }
  if (!ok) {
    if (s.sock >= 0) close(s.sock);
    for (int fd : s.wake)
      if (fd >= 0) close(fd);
    s.sock = s.wake[0] = s.wake[1] = -1;
    throw std::runtime_error("distributed.timeout_s: the watchdog's UDP socket could not be set up on every rank" +
                             (err.empty() ? std::string() : " (this rank: " + err + ")") +
                             "; set distributed.timeout_s: 0 to run without it");
  }
  s.nonce = std::stoull(fields[0][1]);
  // Address sets identify hosts; an address listed by two different sets is ambiguous.
  std::map<std::string, std::set<std::string>> owners;
  for (const auto& f : fields)
    for (const auto& a : split(f[3], ',')) owners[a].insert(f[3]);
  s.peers.resize(all.size());
  int used = 0;
  for (size_t r = 0; r < all.size(); ++r) {
    Peer& p = s.peers[r];
    p.host = fields[r][2];
    const uint16_t peer_port = static_cast<uint16_t>(std::stoul(fields[r][0]));
    std::vector<std::string> use;
    for (const auto& a : split(fields[r][3], ','))
      if (a != "-" && owners[a].size() == 1) use.push_back(a);
    if (use.empty()) use.push_back("127.0.0.1");
    for (const auto& a : use) {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(peer_port);
      if (inet_pton(AF_INET, a.c_str(), &sa.sin_addr) == 1) p.addresses.push_back(sa);
    }
    if (static_cast<int>(r) != s.rank) used += static_cast<int>(p.addresses.size());
  }
  s.how = "timeout " + fmt_s(s.timeout_s) + " s, heartbeat every " + fmt_s(s.interval_s) + " s over UDP to " +
          std::to_string(used) + " address(es) of " + std::to_string(s.world - 1) + " peer(s)";
  s.thread = std::thread([&s] { s.run(); });
}

Watchdog::~Watchdog() {
  if (!s_) return;
  s_->stop = true;
  if (s_->wake[1] >= 0) {
    const char c = 1;
    [[maybe_unused]] ssize_t n = write(s_->wake[1], &c, 1);
  }
  if (s_->thread.joinable()) s_->thread.join();
  if (s_->sock >= 0) close(s_->sock);
  for (int fd : s_->wake)
    if (fd >= 0) close(fd);
}

bool Watchdog::running() const { return s_->thread.joinable(); }

std::string Watchdog::describe() const { return "watchdog: " + s_->how; }

}  // namespace ringtune
