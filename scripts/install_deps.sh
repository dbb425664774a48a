#!/usr/bin/env bash
# Installs ringtune's build and test dependencies from Debian 12 packages.
# Idempotent: packages already present are skipped; safe to run repeatedly.
# Usage: scripts/install_deps.sh [--test]
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev
  libyaml-cpp-dev libspdlog-dev libsentencepiece-dev
  nlohmann-json3-dev libgtest-dev libpcre2-dev
  python3
)

# --test: also what the multi-host and Slurm tests run on (tests/multihost, tests/slurm): network
# namespaces (iproute2) and a one-node Slurm (slurm-wlm with munge).
if [ "${1:-}" = --test ]; then pkgs+=(iproute2 slurm-wlm munge); fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_deps: done"
