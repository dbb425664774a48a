// Turns an MPI return code into std::runtime_error naming the call (MPI_COMM_WORLD keeps the
// default MPI_ERRORS_ARE_FATAL handler, so this mostly documents intent; it matters if a caller
// installs MPI_ERRORS_RETURN).
// defines: mpi_check
#pragma once
#include <mpi.h>

#include <stdexcept>
#include <string>

namespace ringtune {

inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string(call) + " failed: " + std::string(msg, len));
}

}  // namespace ringtune
