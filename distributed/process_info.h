// Where this process sits in a launch (mpirun, srun, or alone), read from the launcher's
// environment before MPI is initialised, so logging can be rank-aware from the first line.
#pragma once
#include <string>

namespace ringtune {

struct ProcessInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_size = 1;  // ranks on this host
};

// OpenMPI (OMPI_COMM_WORLD_*), PMIx/Slurm (PMIX_RANK, SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID),
// MPICH/Hydra (PMI_RANK, PMI_SIZE); a single process otherwise.
ProcessInfo detect_process_info();

// gethostname(), or "unknown-host".
std::string host_name();

}  // namespace ringtune
