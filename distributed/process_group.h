// The MPI process group of a run: MPI_Init_thread once (MPI_THREAD_FUNNELED is enough: only the
// main thread calls MPI), rank / world size / local rank, and the few host-side collectives the
// trainer needs outside the tensor communicator (string all-gather for start-up consistency
// checks, flag agreement for coordinated stops, abort).
// defines: ProcessGroup
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ringtune {

class ProcessGroup {
 public:
  // Initialises MPI if it is not yet (idempotent); finalised at process exit (atexit) unless
  // abort() ran. Safe in a process started without mpirun (a singleton world of one).
  // MPI is started only under a launcher (detect_process_info() world > 1, or OMPI_COMM_WORLD_SIZE,
  // PMIX_RANK or PMI_RANK set, so `mpirun -np 1` too) or with RINGTUNE_FORCE_MPI=1; otherwise the
  // group is one process without MPI (no orted, no start-up cost) and every collective is local.
  // If MPI was initialised by someone else, it is used and left for them to finalise.
  static ProcessGroup& init();
  static bool initialized();  // whether init() ran

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes on this host: OMPI_COMM_WORLD_LOCAL_RANK when set, else computed
  // from an all-gather of host names.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // Whether this group runs over MPI (false: a single process without MPI).
  bool has_mpi() const { return has_mpi_; }
  // Rank among the entries of `hosts` equal to hosts[rank], and how many there are (the host-name
  // fallback of local_rank / local_size).
  static std::pair<int, int> local_rank_among(const std::vector<std::string>& hosts, int rank);

  // Every rank's `s`, in rank order.
  std::vector<std::string> all_gather_string(const std::string& s) const;
  // Logical OR of `flag` over ranks.
  bool any(bool flag) const;
  // Sum of `v` over ranks.
  int64_t sum(int64_t v) const;
  double sum(double v) const;
  void barrier() const;
  // MPI_Abort(MPI_COMM_WORLD, code): takes every rank down (used when one rank fails). A rank that
  // fails alone must end this way: returning from main (or std::exit) runs MPI_Finalize, which
  // waits for the other ranks and hangs if they are blocked in a collective. Without MPI: _Exit.
  [[noreturn]] void abort(int code) const;

 private:
  ProcessGroup();
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool has_mpi_ = false;
};

}  // namespace ringtune
