#!/usr/bin/env bash
# The README's main command: installs dependencies (apt-get), builds, then runs the whole
# quickstart on the bundled data in configs/quickstart (no download):
#   1. init-model  a new small Llama model + a SentencePiece tokenizer trained on corpus.txt
#   2. stage 1     full fine-tuning of that model on the corpus (+ copy drills): stage1.yaml
#   3. stage 2     LoRA fine-tuning of the stage-1 model on function-calling chats: stage2.yaml
#   4. eval        exact match of greedily generated calls on the held-out test.jsonl
#   5. export      the PEFT adapter and a merged model; a summary of where everything is
#
# Environment (all optional):
#   QUICKSTART_DIR        run directory (default runs/quickstart). Every run starts clean: the
#                         directory is deleted first, but only if it holds a previous quickstart
#                         run (a .ringtune-quickstart marker) or is empty; anything else is refused.
#   RINGTUNE_BIN          ringtune binary (default ./build/ringtune)
#   QUICKSTART_SKIP_BUILD 1: skip install_deps.sh and build.sh (the binary must exist)
#   QUICKSTART_NP         training ranks (default: the number of cores, at most 2): both stages
#                         run as `mpirun -np N ringtune train` with one thread per rank, which
#                         gives the same losses and weights as one process, about N times faster
#                         (see the README's distributed section). 1: no mpirun.
#   OMP_NUM_THREADS       CPU threads per process (default 1). OMP_WAIT_POLICY defaults to
#                         PASSIVE: libgomp's spin-waiting makes a busy machine ~20x slower.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICKSTART_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/install_deps.sh
  bash scripts/build.sh
fi

rt=${RINGTUNE_BIN:-./build/ringtune}
qs=configs/quickstart
run=${QUICKSTART_DIR:-runs/quickstart}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
np=${QUICKSTART_NP:-$(( $(env -u OMP_NUM_THREADS nproc) < 2 ? 1 : 2 ))}
train() {  # ringtune train on $np ranks
  if [ "$np" -gt 1 ] && command -v mpirun >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun -np "$np" --bind-to core -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$rt" train "$@"
  else
    "$rt" train "$@"
  fi
}

[ -x "$rt" ] || { echo "quickstart: $rt not found (build first: bash scripts/build.sh)" >&2; exit 2; }

# Model and tokenizer: small enough for 2 CPU cores, big enough to learn the task.
vocab=512 hidden=128 layers=4 heads=4 kv_heads=2 context=192 seed=1122

banner() { printf '\n==== %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# First and last training loss in a metrics.jsonl (lines with "loss": <number>).
loss_range() {
  awk 'match($0, /"loss":[-0-9.eE+]+/) {
         v = substr($0, RSTART + 7, RLENGTH - 7); if (first == "") first = v; last = v }
       END { printf "%.4f -> %.4f", first, last }' "$1"
}
last_valid() {
  awk 'match($0, /"valid_loss":[-0-9.eE+]+/) { v = substr($0, RSTART + 13, RLENGTH - 13) }
       END { if (v != "") printf "%.4f", v; else printf "n/a" }' "$1"
}

# ---- run directory: start clean
if [ -e "$run" ]; then
  if [ -f "$run/.ringtune-quickstart" ] || [ -z "$(ls -A "$run")" ]; then
    rm -rf "$run"
  else
    echo "quickstart: $run exists and is not a quickstart run directory; choose another" \
         "QUICKSTART_DIR or remove it" >&2
    exit 2
  fi
fi
mkdir -p "$run"
touch "$run/.ringtune-quickstart"
run=$(cd "$run" && pwd)
t_start=$(now)

# ---- 1. model and tokenizer
banner "1/5 init-model: ${layers}-layer Llama (hidden $hidden), SentencePiece tokenizer (vocab $vocab) trained on $qs/corpus.txt"
# The tokenizer is trained on the corpus with its spaces removed (and a '|' before each line), so
# that no piece starts with the word-boundary marker: a word is then the same pieces after a space
# ("in Nora") and after a quote ("contact=\"Nora\""), and copying a value from the request into
# the call is copying tokens. ('|' occurs in no data file; it only keeps line-initial words apart.)
sed 's/ //g; s/^/|/' "$qs/corpus.txt" > "$run/tokenizer_corpus.txt"
t0=$(now)
"$rt" init-model --output "$run/base-model" --corpus "$run/tokenizer_corpus.txt" \
  --vocab-size $vocab --hidden $hidden --layers $layers --heads $heads --kv-heads $kv_heads \
  --context $context --seed $seed
t_init=$(secs "$t0" "$(now)")

# ---- 2. stage 1: full fine-tuning on the corpus
banner "2/5 stage 1: full fine-tuning on the corpus ($qs/stage1.yaml)"
t0=$(now)
train "$qs/stage1.yaml" initial_base_model_ckpt_path="$run/base-model" \
  output_dir="$run/stage1"
t_s1=$(secs "$t0" "$(now)")

# ---- 3. stage 2: LoRA on the function-calling chats
banner "3/5 stage 2: LoRA fine-tuning of the stage-1 model on $qs/train.jsonl ($qs/stage2.yaml)"
t0=$(now)
train "$qs/stage2.yaml" initial_base_model_ckpt_path="$run/stage1/model" \
  output_dir="$run/stage2"
t_s2=$(secs "$t0" "$(now)")

# ---- 4. evaluation on the held-out test split
banner "4/5 eval: exact match of greedy calls on the held-out $qs/test.jsonl"
t0=$(now)
accuracy="not measured (this ringtune has no eval command)"
if "$rt" eval --help >/dev/null 2>&1; then
  "$rt" eval "$qs/stage2.yaml" initial_base_model_ckpt_path="$run/stage1/model" \
    output_dir="$run/stage2" --checkpoint "$run/stage2" | tee "$run/eval.log"
  accuracy=$(grep -m1 -o 'exact_match [0-9.]* ([0-9]*/[0-9]*)' "$run/eval.log" || echo "see $run/eval.log")
else
  echo "skipped: $rt has no eval command"
fi
t_eval=$(secs "$t0" "$(now)")

# ---- 5. export
banner "5/5 export: PEFT adapter and merged model"
t0=$(now)
"$rt" export --checkpoint "$run/stage2" --format peft --output "$run/adapter"
"$rt" export --checkpoint "$run/stage2" --format merged --output "$run/merged-model"
t_export=$(secs "$t0" "$(now)")
# Charts of both training stages (loss, throughput, MFU, step-time breakdown, memory).
"$rt" report "$run/stage1" > /dev/null && "$rt" report "$run/stage2" > /dev/null
t_total=$(secs "$t_start" "$(now)")

summary="$run/summary.txt"
{
  echo "ringtune quickstart: done in ${t_total}s ($np training rank(s), OMP_NUM_THREADS=$OMP_NUM_THREADS; load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "  held-out exact match   $accuracy"
  echo "  stage 1 loss           $(loss_range "$run/stage1/metrics.jsonl")"
  echo "  stage 2 loss           $(loss_range "$run/stage2/metrics.jsonl") (validation $(last_valid "$run/stage2/metrics.jsonl"))"
  echo "  wall time (s)          init $t_init, stage 1 $t_s1, stage 2 $t_s2, eval $t_eval, export $t_export"
  echo
  echo "  base model + tokenizer $run/base-model (tokenizer.model)"
  echo "  stage-1 model          $run/stage1/model"
  echo "  stage-2 checkpoints    $run/stage2/checkpoints"
  echo "  LoRA adapter (PEFT)    $run/adapter"
  echo "  merged model           $run/merged-model"
  echo "  metrics                $run/stage1/metrics.jsonl, $run/stage2/metrics.jsonl"
  echo "  charts                 $run/stage1/report.html, $run/stage2/report.html"
  if [ -f "$run/stage2/eval.json" ]; then echo "  eval results           $run/stage2/eval.json"; fi
  echo
  echo "  try it:  $rt eval $qs/stage2.yaml initial_base_model_ckpt_path=$run/stage1/model output_dir=$run/stage2 --checkpoint $run/stage2"
} > "$summary"
banner "summary ($summary)"
cat "$summary"
