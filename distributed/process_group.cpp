// The process group: when to start MPI, rank / size / local rank, host-side collectives, abort.
#include "distributed/process_group.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "distributed/mpi_check.h"
#include "distributed/process_info.h"
#include "distributed/progress.h"

namespace ringtune {

namespace {

std::atomic<bool> g_initialized{false};
std::atomic<bool> g_aborting{false};

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

// Started by mpirun / srun / hydra (even with one rank), or forced.
bool launched_by_mpi_launcher() {
  const char* force = std::getenv("RINGTUNE_FORCE_MPI");
  if (force && std::strcmp(force, "1") == 0) return true;
  return detect_process_info().world_size > 1 || env_set("OMPI_COMM_WORLD_SIZE") ||
         env_set("PMIX_RANK") || env_set("PMI_RANK");
}

void finalize_at_exit() {
  if (g_aborting) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (*end == '\0' && x >= 0) ? static_cast<int>(x) : fallback;
}

}  // namespace

ProcessGroup& ProcessGroup::init() {
  static ProcessGroup group;  // constructed once; a throwing constructor is retried next call
  return group;
}

bool ProcessGroup::initialized() { return g_initialized; }

ProcessGroup::ProcessGroup() {
  int mpi_up = 0;
  MPI_Initialized(&mpi_up);
  if (!mpi_up && launched_by_mpi_launcher()) {
    int provided = 0;
    mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    std::atexit(finalize_at_exit);
    mpi_up = 1;
  }
  has_mpi_ = mpi_up != 0;
  if (has_mpi_) {
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    // OpenMPI's own numbers when they describe this world; host names otherwise (srun, hydra).
    const int ompi_size = env_int("OMPI_COMM_WORLD_SIZE", -1);
    const int lr = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
    const int ls = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1);
    if (ompi_size == size_ && lr >= 0 && ls > lr) {
      local_rank_ = lr;
      local_size_ = ls;
    } else {
      const auto local = local_rank_among(all_gather_string(host_name()), rank_);
      local_rank_ = local.first;
      local_size_ = local.second;
    }
  }
  g_initialized = true;
}

std::pair<int, int> ProcessGroup::local_rank_among(const std::vector<std::string>& hosts,
                                                   int rank) {
  if (rank < 0 || rank >= static_cast<int>(hosts.size()))
    throw std::invalid_argument("local_rank_among: rank " + std::to_string(rank) + " outside [0, " +
                                std::to_string(hosts.size()) + ")");
  int before = 0, same = 0;
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    if (hosts[r] != hosts[rank]) continue;
    ++same;
    if (r < rank) ++before;
  }
  return {before, same};
}

std::vector<std::string> ProcessGroup::all_gather_string(const std::string& s) const {
  if (!has_mpi_ || size_ == 1) return {s};
  if (s.size() > static_cast<size_t>(INT32_MAX))
    throw std::invalid_argument("all_gather_string: string of " + std::to_string(s.size()) +
                                " bytes is over the 2 GiB MPI count limit");
  const int len = static_cast<int>(s.size());
  CollectiveScope waiting("all_gather_string", len);
  std::vector<int> lens(size_), displs(size_);
  mpi_check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD),
            "MPI_Allgather");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[r] = static_cast<int>(total);
    total += lens[r];
    if (total > INT32_MAX) throw std::invalid_argument("all_gather_string: over 2 GiB in all");
  }
  std::string all(static_cast<size_t>(total), '\0');
  mpi_check(MPI_Allgatherv(s.data(), len, MPI_CHAR, &all[0], lens.data(), displs.data(), MPI_CHAR,
                           MPI_COMM_WORLD),
            "MPI_Allgatherv");
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

bool ProcessGroup::any(bool flag) const {
  if (!has_mpi_ || size_ == 1) return flag;
  int in = flag ? 1 : 0, out = 0;
  CollectiveScope waiting("any", 1);
  mpi_check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD), "MPI_Allreduce");
  return out != 0;
}

int64_t ProcessGroup::sum(int64_t v) const {
  if (!has_mpi_ || size_ == 1) return v;
  int64_t out = 0;
  CollectiveScope waiting("sum", 1);
  mpi_check(MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;
}

double ProcessGroup::sum(double v) const {
  if (!has_mpi_ || size_ == 1) return v;
  double out = 0;
  CollectiveScope waiting("sum", 1);
  mpi_check(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;
}

void ProcessGroup::barrier() const {
  if (!has_mpi_ || size_ == 1) return;
  CollectiveScope waiting("barrier", 0);
  mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

void ProcessGroup::abort(int code) const {
  g_aborting = true;
  std::fflush(stdout);
  std::fflush(stderr);
  if (has_mpi_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::_Exit(code);
}

}  // namespace ringtune
