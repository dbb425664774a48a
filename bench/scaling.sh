#!/usr/bin/env bash
# Data-parallel scaling of `ringtune train` on this machine: tokens/s at np=2 (one thread per
# rank) over np=1 (one thread), for a LoRA configuration on a random model of hidden 256, 4
# layers, sequences of 256 tokens (override with HIDDEN, LAYERS, SEQ, STEPS, ZERO, NP_MAX).
# Prints one line per world size and the speed-up. Tokens/s is taken from metrics.jsonl over the
# steps after the first two (warm-up), as total tokens / total step time.
# Usage: bash bench/scaling.sh   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RINGTUNE_BIN:-./build/ringtune}
HIDDEN=${HIDDEN:-256} LAYERS=${LAYERS:-4} SEQ=${SEQ:-256} STEPS=${STEPS:-12} ZERO=${ZERO:-0} NP_MAX=${NP_MAX:-2}
work=$(mktemp -d /tmp/ringtune-scaling-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

"$bin" --log-level warn init-model --output "$work/base" --corpus configs/quickstart/corpus.txt \
  --vocab-size 1024 --hidden "$HIDDEN" --layers "$LAYERS" --heads 4 --kv-heads 4 --context "$SEQ" --seed 1
# Plain text, packed into full sequences of SEQ tokens.
python3 -c '
import json, sys
for line in open("configs/quickstart/corpus.txt", encoding="utf-8"):
    line = line.strip()
    if line: print(json.dumps({"text": line}))
' > "$work/corpus.jsonl"
cat > "$work/cfg.yaml" <<YAML
initial_base_model_ckpt_path: $work/base
train_path: $work/corpus.jsonl
task: causal_lm
generation_config:
  prompt_format: none
dtype: float32
context_length: $SEQ
packing: true
global_batch_size: 8
train_batch_size_per_device: 2
max_steps: $STEPS
learning_rate: 0.001
lr_scheduler_type: constant
gradient_checkpointing: false
checkpoint_every_n_steps: 100000
distributed:
  zero_stage: $ZERO
lora_config:
  r: 16
  lora_alpha: 32
  target_modules: all-linear
YAML

rate() {  # tokens/s of a run directory, steps 3.., from metrics.jsonl
  python3 - "$1/metrics.jsonl" <<'PY'
import json, sys
# tokens of a step = tokens_per_s * its time; step times from consecutive elapsed_s
t = [json.loads(l) for l in open(sys.argv[1])]
tok = sum(r["tokens_per_s"] * (r["elapsed_s"] - p["elapsed_s"]) for p, r in zip(t[1:], t[2:]))
sec = t[-1]["elapsed_s"] - t[1]["elapsed_s"]
print(f"{tok / sec:.1f}")
PY
}

echo "config: hidden $HIDDEN, $LAYERS layers, seq $SEQ, LoRA r 16 all-linear, global batch 8 x $SEQ tokens, zero_stage $ZERO, $STEPS steps"
declare -A tps
for np in $(seq 1 "$NP_MAX"); do
  out="$work/np$np"
  mpirun --bind-to core --map-by core -np "$np" -x OMP_NUM_THREADS "$bin" --log-level warn train "$work/cfg.yaml" \
    output_dir="$out" > "$work/log$np" 2>&1 || { cat "$work/log$np"; exit 1; }
  tps[$np]=$(rate "$out")
  echo "np=$np  tokens/s ${tps[$np]}"
done
python3 -c "import sys; print(f'speed-up np=2 / np=1: {float(sys.argv[2]) / float(sys.argv[1]):.2f}x')" "${tps[1]}" "${tps[2]}"
