#!/usr/bin/env bash
# The README's main command: installs dependencies (apt-get), builds, and runs the main job on an
# embedded default. Until training lands this is greedy generation with the stories260k model
# (../shared/fixtures/stories260k), then `inspect` of the same model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
model=${RINGTUNE_MODEL_DIR:-../shared/fixtures/stories260k}
echo "== ringtune inspect $model"
./build/ringtune inspect "$model"
echo "== ringtune generate --model $model --max-new-tokens 64 (greedy from BOS)"
./build/ringtune generate --model "$model" --max-new-tokens 64
