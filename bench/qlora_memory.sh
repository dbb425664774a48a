#!/usr/bin/env bash
# Peak resident memory of LoRA vs QLoRA (quantization: nf4) training on a model of TinyLlama-1.1B's
# shape (hidden 2048, MLP 5632, 22 layers, 32 heads, 4 key/value heads, vocab 32000, untied
# lm_head; random weights), bfloat16, sequence 512 (packed quickstart chats), micro-batch 1, LoRA
# r 16 on all linear layers, with and without gradient checkpointing. One process, a few steps
# each; prints each run's peak RSS (VmHWM, from metrics.jsonl), step time and the QLoRA / LoRA
# ratios.
#
#   bash bench/qlora_memory.sh [-s STEPS] [-w WORKDIR] [-g "false true"] [-l peft-default]
# (-l peft-default: LoRA r 8 on q_proj and v_proj, PEFT's defaults, instead of r 16 on all linear)
# Needs build/ringtune (or RINGTUNE_BIN) and a python3 with numpy (Debian's /usr/bin/python3 with python3-numpy) to
# write the 4.4 GB float32 model once (kept in WORKDIR, default /tmp/ringtune-qlora-memory).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=3 work=/tmp/ringtune-qlora-memory gcs="false true"
lora="{r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: all-linear}" tag=r16-all
while getopts "s:w:g:l:" o; do
  case $o in
    s) steps=$OPTARG ;; w) work=$OPTARG ;; g) gcs=$OPTARG ;;
    l) [ "$OPTARG" = peft-default ] && lora="{r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: [q_proj, v_proj]}" tag=r8-qv ;;
    *) exit 2 ;;
  esac
done
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && py=/usr/bin/python3
mkdir -p "$work"
model=$work/tinyllama-shape
if [ ! -f "$model/model.safetensors" ]; then
  tok=$work/tok && mkdir -p "$tok" && cp ../shared/fixtures/tokenizers/llama2-sp/tokenizer.model "$tok/"
  $py bench/make_tiny_model.py "$tok" "$model" --hidden 2048 --intermediate 5632 --layers 22 --heads 32 --kv-heads 4
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc --all)}
rt=${RINGTUNE_BIN:-build/ringtune}

run() {  # name quantization gradient_checkpointing
  local out=$work/run-$1
  rm -rf "$out"
  cat > "$work/$1.yaml" <<EOF
initial_base_model_ckpt_path: $model
train_path: $PWD/configs/quickstart/train.jsonl
output_dir: $out
dtype: bfloat16
context_length: 512
packing: true
generation_config: {prompt_format: llama2}
train_batch_size_per_device: 1
global_batch_size: 1
max_steps: $steps
learning_rate: 1.0e-4
seed: 1
gradient_checkpointing: $3
quantization: $2
lora_config: $lora
EOF
  "$rt" train "$work/$1.yaml" > "$work/$1.log" 2>&1 || { tail -5 "$work/$1.log"; exit 1; }
  tail -1 "$out/metrics.jsonl" | $py -c '
import json, sys
m = json.loads(sys.stdin.read())
print("%-28s peak_rss_mib %7d  ms/step %9.0f  loss %.4f" % (sys.argv[1], m["peak_rss_mib"], m["ms"]["step"], m["loss"]))
' "$1" | tee -a "$work/results.txt"
}

: > "$work/results.txt"  # this invocation's rows
for gc in $gcs; do
  run "lora-bf16-$tag-gc-$gc" none "$gc"
  run "qlora-nf4-$tag-gc-$gc" nf4 "$gc"
done
$py - "$work/results.txt" <<'EOF'
import re, sys
rows = {l.split()[0]: int(re.search(r"peak_rss_mib\s+(\d+)", l).group(1)) for l in open(sys.argv[1])}
for name, rss in rows.items():
    if name.startswith("qlora"):
        base = rows.get(name.replace("qlora-nf4", "lora-bf16"))
        if base: print(f"{name}: QLoRA peak / LoRA peak = {rss} / {base} = {rss / base:.3f}")
EOF
