#!/usr/bin/env bash
# The memory estimator (`ringtune estimate`) against measured peak RSS (VmHWM, from metrics.jsonl)
# of short CPU training runs on random-weight models of two shapes:
#   small: hidden 768, 12 layers, 12 heads, MLP 2048, vocab 32000 (134M parameters), sequence 256
#   1b:    TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads / 4 key-value, MLP 5632), sequence 512
# over LoRA / full / QLoRA, float32 / 8-bit Adam, gradient checkpointing off / on, float32 /
# bfloat16. Prints one row per run (the estimate's live tensor bytes, its resident estimate with the C
# heap's retention, the measured peak, their ratio) and the largest deviation, and writes them to
# WORKDIR/memory_estimate.tsv. The retention factors (src/train/memory_estimate.cpp) were fitted on
# 1b-lora-bf16-adamw-gc1 and 1b-lora-bf16-adamw-gc0; the other nine rows are the check.
#
#   bash bench/memory_estimate.sh [-w WORKDIR] [-s STEPS] [-o ONLY_REGEX]
# Needs build/ringtune (or RINGTUNE_BIN) and a python3 with numpy (Debian's /usr/bin/python3 with
# python3-numpy) to write the models once (4.4 GB for the 1b shape). About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
work=/tmp/ringtune-memory-estimate steps=3 only=.
while getopts "w:s:o:" o; do
  case $o in w) work=$OPTARG ;; s) steps=$OPTARG ;; o) only=$OPTARG ;; *) exit 2 ;; esac
done
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && py=/usr/bin/python3
rt=${RINGTUNE_BIN:-build/ringtune}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc --all)}
mkdir -p "$work/tok"
cp ../shared/fixtures/tokenizers/llama2-sp/tokenizer.model "$work/tok/"
model() {  # name make_tiny_model args...
  local dir=$work/$1; shift
  [ -f "$dir/model.safetensors" ] || $py bench/make_tiny_model.py "$work/tok" "$dir" "$@" > /dev/null
}
model small --hidden 768 --layers 12 --heads 12 --kv-heads 12 --intermediate 2048
model 1b --hidden 2048 --intermediate 5632 --layers 22 --heads 32 --kv-heads 4

lora="{r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: all-linear}"
out=$work/memory_estimate.tsv
printf "config\tlive_mib\testimate_mib\tmeasured_mib\tratio\n" > "$out"
run() {  # name shape seq dtype kind(lora|full|qlora) optimizer gradient_checkpointing
  local name=$1 shape=$2 seq=$3 dtype=$4 kind=$5 opt=$6 gc=$7
  [[ $name =~ $only ]] || return 0
  local dir=$work/run-$name cfg=$work/$name.yaml
  rm -rf "$dir"
  {
    echo "initial_base_model_ckpt_path: $work/$shape"
    echo "train_path: $PWD/configs/quickstart/train.jsonl"
    echo "output_dir: $dir"
    echo "dtype: $dtype"
    echo "context_length: $seq"
    echo "generation_config: {prompt_format: llama2}"
    echo "train_batch_size_per_device: 1"
    echo "global_batch_size: 1"
    echo "max_steps: $steps"
    echo "optimizer: $opt"
    echo "gradient_checkpointing: $gc"
    [ "$kind" = qlora ] && echo "quantization: nf4"
    [ "$kind" != full ] && echo "lora_config: $lora"
  } > "$cfg"
  local est live
  est=$("$rt" estimate "$cfg" --no-grid 2>/dev/null | awk '$1 == "peak" && $2 != "of" {print ($3 == "GiB" ? $2 * 1024 : $2)}')
  live=$("$rt" estimate "$cfg" --no-grid 2>/dev/null | awk '$1 == "peak" && $2 == "of" {print ($6 == "GiB" ? $5 * 1024 : $5)}')
  "$rt" train "$cfg" > "$work/$name.log" 2>&1 || { echo "$name: train failed"; tail -3 "$work/$name.log"; return 1; }
  local meas
  meas=$(tail -1 "$dir/metrics.jsonl" | $py -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mib"])')
  $py - "$name" "$est" "$meas" "$out" "$live" <<'EOF'
import sys
name, est, meas, out, live = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
print(f"{name:30s} live tensors {live:6.0f}  estimate {est:6.0f}  measured {meas:6.0f} MiB  estimate/measured {est / meas:.3f}")
open(out, "a").write(f"{name}\t{live:.0f}\t{est:.0f}\t{meas:.0f}\t{est / meas:.4f}\n")
EOF
}

run small-full-f32-adamw-gc0    small 256 float32  full  adamw      false
run small-full-f32-adamw8-gc0   small 256 float32  full  adamw_8bit false
run small-full-f32-adamw8-gc1   small 256 float32  full  adamw_8bit true
run small-full-bf16-adamw-gc1   small 256 bfloat16 full  adamw      true
run small-lora-f32-adamw-gc0    small 256 float32  lora  adamw      false
run small-qlora-bf16-adamw-gc0  small 256 bfloat16 qlora adamw      false
run 1b-lora-bf16-adamw-gc1      1b    512 bfloat16 lora  adamw      true
run 1b-lora-bf16-adamw-gc0      1b    512 bfloat16 lora  adamw      false
run 1b-lora-bf16-adamw8-gc1     1b    512 bfloat16 lora  adamw_8bit true
run 1b-qlora-bf16-adamw-gc1     1b    512 bfloat16 qlora adamw      true
run 1b-qlora-bf16-adamw-gc0     1b    512 bfloat16 qlora adamw      false
$py - "$out" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
if rows:
    worst = max(rows, key=lambda r: abs(float(r[4]) - 1))
    print(f"{len(rows)} configurations; largest deviation {100 * (float(worst[4]) - 1):+.1f}% ({worst[0]})")
EOF
