# Sourced by launch/mpirun_local.sh and launch/mpirun_hostfile.sh (not run by itself): the part
# of the launch both share.
#
# run_train NAME VARS_REGEX: adds `-x VAR` for every variable of the environment whose name
# matches VARS_REGEX, lets root run OpenMPI, then runs
#   mpirun "${mpi_opts[@]}" $MPIRUN_ARGS "$binary" train "$config" "$@"
# (or, with dry_run=1, prints that command). Reads mpi_opts, binary, config and dry_run from the
# calling script; NAME prefixes its error messages.
run_train() {
  local name=$1 vars_regex=$2 v
  shift 2
  for v in $(env | grep -oE "^($vars_regex)=" | tr -d '='); do
    mpi_opts+=(-x "$v")
  done
  if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
  fi
  # shellcheck disable=SC2206
  local cmd=(mpirun "${mpi_opts[@]}" ${MPIRUN_ARGS:-} "$binary" train "$config" "$@")
  if [ "$dry_run" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
  [ -x "$binary" ] || { echo "$name: no ringtune binary at $binary (build it, or --binary PATH)" >&2; exit 2; }
  exec "${cmd[@]}"
}
