#!/usr/bin/env bash
# 8-bit AdamW against float32 AdamW, two figures:
#   1. optimizer state on full fine-tuning of a 125M-parameter shape (hidden 768, MLP 2048, 12
#      layers, 12 heads, 4 key/value heads, vocab 32000, untied; random weights): one step each,
#      bytes of moment state (the trainer's "optimizer: ..., moment state" line) and peak RSS;
#   2. the loss curve of the quickstart's stage 1 (full fine-tuning, 2 ranks) with each optimizer
#      from the same initial model: worst and final loss difference (needs a quickstart run's
#      base-model, QUICKSTART_DIR, default runs/quickstart).
#
#   bash bench/adamw8bit.sh [-w WORKDIR] [-q QUICKSTART_DIR] [-p memory|curve|both]
# Uses build/ringtune (or RINGTUNE_BIN); a python3 with numpy writes the 0.5 GB model once.
set -euo pipefail
cd "$(dirname "$0")/.."
work=/tmp/ringtune-adamw8bit qs=${QUICKSTART_DIR:-runs/quickstart} part=both
while getopts "w:q:p:" o; do
  case $o in w) work=$OPTARG ;; q) qs=$OPTARG ;; p) part=$OPTARG ;; *) exit 2 ;; esac
done
rt=${RINGTUNE_BIN:-build/ringtune}
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && py=/usr/bin/python3
mkdir -p "$work"

if [ "$part" != curve ]; then
  model=$work/model-125m
  if [ ! -f "$model/model.safetensors" ]; then
    mkdir -p "$work/tok" && cp ../shared/fixtures/tokenizers/llama2-sp/tokenizer.model "$work/tok/"
    $py bench/make_tiny_model.py "$work/tok" "$model" --hidden 768 --intermediate 2048 --layers 12 --heads 12 --kv-heads 4
  fi
  for opt in adamw adamw_8bit; do
    cat > "$work/$opt.yaml" <<EOF
initial_base_model_ckpt_path: $model
train_path: $PWD/configs/quickstart/train.jsonl
output_dir: $work/run-$opt
dtype: float32
context_length: 256
packing: true
generation_config: {prompt_format: llama2}
train_batch_size_per_device: 1
global_batch_size: 1
max_steps: 2
learning_rate: 1.0e-4
seed: 1
optimizer: $opt
EOF
    rm -rf "$work/run-$opt"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc --all)} "$rt" train "$work/$opt.yaml" > "$work/$opt.log" 2>&1 ||
      { tail -5 "$work/$opt.log"; exit 1; }
    params=$(grep -o 'trainable parameters: [0-9]*' "$work/$opt.log" | grep -o '[0-9]*$')
    state=$(grep -o 'moment state [0-9.]* MiB' "$work/$opt.log" | grep -o '[0-9.]* MiB')
    peak=$(tail -1 "$work/run-$opt/metrics.jsonl" | $py -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mib"])')
    echo "$opt: $params trainable parameters, moment state $state, peak RSS $peak MiB" | tee -a "$work/memory.txt"
  done
  $py - "$work/memory.txt" <<'EOF'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+): \d+ trainable parameters, moment state ([0-9.]+) MiB", line)
    if m: rows[m.group(1)] = float(m.group(2))
if "adamw" in rows and "adamw_8bit" in rows:
    print(f"8-bit / float32 moment state: {rows['adamw_8bit']:.1f} / {rows['adamw']:.1f} MiB = {rows['adamw_8bit'] / rows['adamw']:.3f}")
EOF
fi

if [ "$part" != memory ]; then
  [ -d "$qs/base-model" ] || { echo "adamw8bit: no $qs/base-model (run the quickstart first)" >&2; exit 2; }
  export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  for opt in adamw adamw_8bit; do
    rm -rf "$work/stage1-$opt"
    mpirun -np 2 --bind-to core -x OMP_NUM_THREADS "$rt" train configs/quickstart/stage1.yaml \
      initial_base_model_ckpt_path="$qs/base-model" output_dir="$work/stage1-$opt" optimizer=$opt \
      > "$work/stage1-$opt.log" 2>&1 || { tail -5 "$work/stage1-$opt.log"; exit 1; }
  done
  $py - "$work/stage1-adamw/metrics.jsonl" "$work/stage1-adamw_8bit/metrics.jsonl" <<'EOF'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
d = [abs(x - y) for x, y in zip(a, b)]
w = max(range(len(d)), key=d.__getitem__)
tail = lambda v: sum(v[-50:]) / len(v[-50:])
print(f"stage 1, {len(a)} steps: loss {a[0]:.4f} -> {a[-1]:.4f} (float32 AdamW), {b[0]:.4f} -> {b[-1]:.4f} (8-bit)")
print(f"worst |loss difference| {d[w]:.4f} at step {w + 1} (losses {a[w]:.4f} / {b[w]:.4f}); mean of the last 50 steps "
      f"{tail(a):.4f} / {tail(b):.4f} (difference {abs(tail(a) - tail(b)) / tail(a) * 100:.2f}%)")
EOF
fi
