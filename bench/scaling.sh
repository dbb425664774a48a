#!/usr/bin/env bash
# Data-parallel scaling of `ringtune train` on this machine: tokens/s for np = 1, 2, 4 ranks (one
# thread each; ranks beyond the cores are oversubscribed and flagged) at ZeRO stage 0 and 1, the
# speed-up and efficiency over np=1, rank 0's step-time breakdown (data, forward, backward, comm,
# optimizer), written as a table, OUTDIR/scaling.json and OUTDIR/scaling.svg (default OUTDIR:
# /tmp/ringtune-scaling-SHAPE/report); optionally also two
# hosts (network namespaces, OpenMPI over TCP: tests/multihost/hosts.sh, needs root); then the
# analytic model of gradient communication at 8-64 GPUs for Llama-3-8B shapes
# (bench/scaling_report.py prints its assumptions).
#
#   bash bench/scaling.sh [-m small|medium] [-n "1 2 4"] [-z "0 1"] [-s STEPS] [-H] [-o OUTDIR]
#
# Shapes (as ../shared/bench/compare_peer.sh): small d256 L4 heads 8/4 MLP 688 vocab 32000 seq 256;
# medium (default) d512 L8 heads 8/8 MLP 1376 vocab 32000 seq 512; random weights around Llama 2's
# tokenizer, the quickstart's chats packed, LoRA r16 on all linear layers, float32, global batch 8
# sequences (micro-batches of at most 4 per rank). A quiet machine gives meaningful figures.
# Needs build/ringtune (or RINGTUNE_BIN) and python3 (numpy makes writing the model faster).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shape=medium nps="1 2 4" zeros="0 1" steps=8 hosts=0 outdir=
while getopts "m:n:z:s:Ho:" o; do
  case $o in m) shape=$OPTARG ;; n) nps=$OPTARG ;; z) zeros=$OPTARG ;; s) steps=$OPTARG ;; H) hosts=1 ;; o) outdir=$OPTARG ;;
             *) exit 2 ;; esac
done
bin=$(realpath "${RINGTUNE_BIN:-build/ringtune}")
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && py=/usr/bin/python3
case $shape in
  small) dims="--hidden 256 --layers 4 --heads 8 --kv-heads 4 --intermediate 688" seq=256 ;;
  medium) dims="--hidden 512 --layers 8 --heads 8 --kv-heads 8 --intermediate 1376" seq=512 ;;
  *) echo "unknown shape $shape (small or medium)"; exit 2 ;;
esac
work=/tmp/ringtune-scaling-$shape
[ -n "$outdir" ] || outdir=$work/report
mkdir -p "$work/tok" "$outdir"
cp ../shared/fixtures/tokenizers/llama2-sp/tokenizer.model "$work/tok/"
# shellcheck disable=SC2086
[ -f "$work/model/model.safetensors" ] || $py bench/make_tiny_model.py "$work/tok" "$work/model" $dims > /dev/null
cat > "$work/cfg.yaml" <<YAML
initial_base_model_ckpt_path: $work/model
train_path: $root/configs/quickstart/train.jsonl
generation_config: {prompt_format: llama2}
dtype: float32
context_length: $seq
packing: true
global_batch_size: 8
train_batch_size_per_device: 4
max_steps: $steps
learning_rate: 1.0e-4
lr_scheduler_type: constant
gradient_checkpointing: false
checkpoint_every_n_steps: 100000
lora_config: {r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: all-linear}
YAML
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
cores=$(nproc --all)
specs=()
for zero in $zeros; do
  for np in $nps; do
    out=$work/np$np-z$zero
    rm -rf "$out"
    label="np=$np zero$zero"
    bind=(--bind-to core --map-by core)
    if [ "$np" -gt "$cores" ]; then bind=(--oversubscribe --bind-to none); label="$label oversubscribed"; fi
    mpirun "${bind[@]}" -np "$np" -x OMP_NUM_THREADS "$bin" --log-level warn train "$work/cfg.yaml" \
      output_dir="$out" distributed.zero_stage="$zero" > "$work/log-np$np-z$zero" 2>&1 || { tail -5 "$work/log-np$np-z$zero"; exit 1; }
    specs+=("$out:$np:$zero:$label")
    echo "ran $label"
  done
done
if [ "$hosts" = 1 ]; then
  # shellcheck source=../tests/multihost/hosts.sh
  source tests/multihost/hosts.sh
  if mh_up 2; then
    for zero in $zeros; do
      out=$work/hosts2-z$zero
      rm -rf "$out"
      chmod -R a+rX "$work"
      mh_mpirun -np 2 --host h1:1,h2:1 -x OMP_NUM_THREADS=1 "$bin" --log-level warn train "$work/cfg.yaml" \
        output_dir="$out" distributed.zero_stage="$zero" > "$work/log-hosts2-z$zero" 2>&1 || { tail -5 "$work/log-hosts2-z$zero"; exit 1; }
      specs+=("$out:2:$zero:2-hosts zero$zero TCP")
      echo "ran 2 hosts zero$zero"
    done
    mh_down
  else
    echo "two hosts skipped (network namespaces unavailable)"
  fi
fi
echo "shape $shape: $(echo "$dims" | tr -d -), seq $seq, LoRA r16 all-linear, float32, global batch 8, $steps steps (first 2 not counted)"
$py bench/scaling_report.py "$outdir" "${specs[@]}"
