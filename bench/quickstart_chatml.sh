#!/usr/bin/env bash
# The quickstart once more, with a model that ships a Jinja chat template (ChatML, the template of
# many Hugging Face chat models) instead of stage 2's llmforge prompt_format map, to measure
# what the Jinja path gives end to end: init-model with the control tokens <|im_start|> and
# <|im_end|> and the template in tokenizer_config.json, stage 1 as in the quickstart, stage 2
# with prompt_format auto (so the model's template is rendered, with the loss on each reply and
# its <|im_end|>, and every sample through the fidelity gate), then eval: exact match of greedy
# replies on the held-out test split, generation stopping at <|im_end|>. Prints the figures.
#
#   bash bench/quickstart_chatml.sh            (after bash scripts/build.sh; ~15 min on 2 cores)
# Environment: CHATML_DIR (default runs/quickstart-chatml, replaced if it holds a previous run),
# RINGTUNE_BIN (default ./build/ringtune), QUICKSTART_NP (training ranks, default 2 when there
# are 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

rt=${RINGTUNE_BIN:-./build/ringtune}
qs=configs/quickstart
run=${CHATML_DIR:-runs/quickstart-chatml}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
np=${QUICKSTART_NP:-$(( $(env -u OMP_NUM_THREADS nproc) < 2 ? 1 : 2 ))}
[ -x "$rt" ] || { echo "quickstart_chatml: $rt not found (build first: bash scripts/build.sh)" >&2; exit 2; }
train() {
  if [ "$np" -gt 1 ] && command -v mpirun >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun -np "$np" --bind-to core -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$rt" train "$@"
  else
    "$rt" train "$@"
  fi
}

if [ -e "$run" ]; then
  [ -f "$run/.ringtune-quickstart-chatml" ] || [ -z "$(ls -A "$run")" ] || {
    echo "quickstart_chatml: $run exists and is not a previous run of this script" >&2; exit 2; }
  rm -rf "$run"
fi
mkdir -p "$run"
touch "$run/.ringtune-quickstart-chatml"
run=$(cd "$run" && pwd)

# ChatML as Hugging Face chat models ship it (no default system message).
cat > "$run/chatml.jinja" <<'EOF'
{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
EOF

# The quickstart's model and tokenizer settings (scripts/quickstart.sh), plus the two tokens, and
# identity normalization: the default nmt_nfkc folds the "\n" that ends ChatML's assistant header
# into the reply's first piece, so every sample would fail the fidelity gate (fidelity_gap).
sed 's/ //g; s/^/|/' "$qs/corpus.txt" > "$run/tokenizer_corpus.txt"
"$rt" init-model --output "$run/base-model" --corpus "$run/tokenizer_corpus.txt" \
  --vocab-size 512 --hidden 128 --layers 4 --heads 4 --kv-heads 2 --context 192 --seed 1122 \
  --special-tokens '<|im_start|>,<|im_end|>' --chat-template "$run/chatml.jinja" --normalization identity

train "$qs/stage1.yaml" initial_base_model_ckpt_path="$run/base-model" output_dir="$run/stage1"

# stage2.yaml without its prompt_format map: auto then renders the model's template.
awk '/^generation_config:/ { skip = 1; next } skip && /^  / { next } { skip = 0; print }' \
  "$qs/stage2.yaml" > "$run/stage2.yaml"
qsabs=$(cd "$qs" && pwd)
paths=(initial_base_model_ckpt_path="$run/stage1/model" output_dir="$run/stage2"
       train_path="$qsabs/train.jsonl" valid_path="$qsabs/valid.jsonl" test_path="$qsabs/test.jsonl")
"$rt" render "$run/stage2.yaml" "${paths[@]}" --n 1 | tee "$run/render.txt"
train "$run/stage2.yaml" "${paths[@]}" 2>&1 | tee "$run/stage2.log"
"$rt" eval "$run/stage2.yaml" "${paths[@]}" --checkpoint "$run/stage2" | tee "$run/eval.log"

echo
echo "prompt format: $(grep -m1 -o 'prompt format: .*' "$run/stage2.log" | sed 's/^prompt format: //')"
echo "chatml $(grep -m1 -o 'exact_match [0-9.]* ([0-9]*/[0-9]*)' "$run/eval.log")"
