// Launcher environment -> rank, world size, local rank.
#include "distributed/process_info.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace ringtune {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  try {
    return std::stoi(v);
  } catch (...) {
    return fallback;
  }
}
int first_of(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names) {
    const int v = env_int(n, -1);
    if (v >= 0) return v;
  }
  return fallback;
}
}  // namespace

ProcessInfo detect_process_info() {
  ProcessInfo p;
  p.rank = first_of({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}, 0);
  p.world_size = first_of({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}, 1);
  p.local_rank = first_of({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}, 0);
  p.local_size = first_of({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}, 1);
  if (p.world_size < 1) p.world_size = 1;
  if (p.local_size < 1 || p.local_size > p.world_size) p.local_size = 1;
  if (p.rank >= p.world_size) p.rank = 0;
  return p;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

}  // namespace ringtune
