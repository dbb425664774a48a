#!/usr/bin/env bash
# Does ringtune run Anyscale's published llmforge fine-tuning configs with only their
# paths changed?
#
#   bash bench/llmforge_configs.sh CONFIG_DIR [WORK_DIR]
#
# For every *.yaml in CONFIG_DIR a copy goes to WORK_DIR/configs in which only paths
# differ: train_path/valid_path point at small local chat files, output_dir at a fresh
# directory, initial_base_model_ckpt_path at a tiny random model of the config's family
# (added when absent, since model_id names a Hub model and ringtune does not download),
# initial_adapter_model_ckpt_path (when present) at the adapter of an earlier LoRA run
# of the same family, and deepspeed.config_path at a small local DeepSpeed JSON. Lines
# are edited as text, so comments, duplicate keys and all other values stay as published.
# Each copy then runs as `ringtune train CFG max_steps=2`.
#
# The configs themselves are third-party files: keep them out of this repository.
# Environment: RINGTUNE (binary), FIXTURES (tokenizer fixtures), TIMEOUT (s per run),
# MEM_KB (virtual-memory cap per run, so an oversized allocation fails instead of
# waking the OOM killer), VALID_SAMPLES (size of the validation file).
set -u
[ $# -ge 1 ] || { echo "usage: $0 CONFIG_DIR [WORK_DIR]" >&2; exit 2; }
CONFIG_DIR=$(cd "$1" && pwd) || exit 2
WORK=${2:-/tmp/llmforge_run}
RINGTUNE=${RINGTUNE:-$(cd "$(dirname "$0")/.." && pwd)/build/ringtune}
FIXTURES=${FIXTURES:-$(cd "$(dirname "$0")/../.." && pwd)/shared/fixtures/tokenizers}
TIMEOUT=${TIMEOUT:-300}
MEM_KB=${MEM_KB:-12000000}
VALID_SAMPLES=${VALID_SAMPLES:-8}
BENCH=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$WORK"/{models,data,deepspeed,configs,runs,logs}
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.tsv
: > "$RESULTS"

# Tiny models, one per family (kept between runs: they depend only on the tokenizers).
for fam in llama2-sp llama3-hf mistral-hf; do
  [ -f "$WORK/models/$fam/model.safetensors" ] && continue
  type=llama; [ $fam = mistral-hf ] && type=mistral
  python3 "$BENCH/make_tiny_model.py" "$FIXTURES/$fam" "$WORK/models/$fam" --model-type $type || exit 1
done

# Short OpenAI-format chat samples: 64 for training, VALID_SAMPLES for validation.
python3 - "$WORK/data" "$VALID_SAMPLES" <<'PY'
import json, sys
cities = ["Paris", "Berlin", "Rome", "Madrid", "Oslo", "Vienna", "Lisbon", "Prague"]
def write(path, n, offset):
    with open(path, "w") as f:
        for i in range(n):
            c = cities[(i + offset) % len(cities)]
            f.write(json.dumps({"messages": [
                {"role": "user", "content": f"Weather in {c}?"},
                {"role": "assistant", "content": f'weather(location="{c}")'}]}) + "\n")
write(sys.argv[1] + "/train.jsonl", 64, 0)
write(sys.argv[1] + "/valid.jsonl", int(sys.argv[2]), 3)
PY

# rewrite SRC DST KEY=VALUE...: copy SRC with the named top-level path keys (and
# deepspeed.config_path) given new values; keys named with "+" are appended when absent.
# DeepSpeed files are written under $WORK/deepspeed with the published file name and a
# ZeRO stage read from that name.
rewrite() {
  python3 - "$WORK/deepspeed" "$@" <<'PY'
import json, os, re, sys
ds_dir, src, dst, *pairs = sys.argv[1:]
new, add = {}, set()
for p in pairs:
    k, v = p.split("=", 1)
    if k.startswith("+"):
        k = k[1:]; add.add(k)
    new[k] = v
out, seen, top = [], set(), None
for line in open(src, encoding="utf-8").read().splitlines():
    m = re.match(r"([A-Za-z_][\w.]*)\s*:", line)
    if m:
        top = m.group(1)
    comment = re.search(r"\s+#.*$", line)          # keep the published trailing comment
    comment = comment.group(0) if comment else ""
    if m and top in new:
        line = f"{top}: {new[top]}{comment}"; seen.add(top)
    elif top == "deepspeed" and (d := re.match(r"(\s+)config_path\s*:\s*([^\s#]+)", line)):
        name = os.path.basename(d.group(2).strip("\"'"))
        stage = 2 if "zero_2" in name else 3
        cfg = {"zero_optimization": {"stage": stage}}
        if "offload_optim" in name:
            cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
        if "param" in name:
            cfg["zero_optimization"]["offload_param"] = {"device": "cpu"}
        with open(os.path.join(ds_dir, name), "w") as f:
            json.dump(cfg, f)
        line = f"{d.group(1)}config_path: {os.path.join(ds_dir, name)}{comment}"
    out.append(line)
out += [f"{k}: {new[k]}" for k in new if k in add and k not in seen]
open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
}

# family FILE: which tiny model fits the config (from model_id, else the file name).
family() {
  local id
  id=$(grep -m1 -E '^model_id:' "$1" | sed -E 's/^model_id:[[:space:]]*//; s/[[:space:]]+#.*//')
  case "${id:-$(basename "$1")}" in
    *Llama-2*|*llama-2*) echo llama2-sp ;;
    *Llama-3*|*llama-3*|*Llama-Guard*) echo llama3-hf ;;
    *[Mm]ixtral*|*[Mm]istral*) echo mistral-hf ;;
    *gemma*) echo llama3-hf ;;   # no Gemma fixture: a Llama 3 model stands in
    *) echo unknown ;;
  esac
}

# lora_sig FILE: the lora_config block without comments, to pick a compatible adapter.
lora_sig() {
  awk '/^lora_config:/{on=1;next} /^[^[:space:]#]/{on=0} on{sub(/[[:space:]]*#.*/,""); if($0!="") print}' "$1" | md5sum | cut -c1-8
}

# run_one FILE [ADAPTER]: rewrite, train, and append one line to results.tsv.
run_one() {
  local src=$1 adapter=${2:-} name fam kind cfg out log rc steps warns msg result
  name=$(basename "$src" .yaml)
  fam=$(family "$src")
  kind=full; grep -q '^lora_config:' "$src" && kind=lora
  cfg=$WORK/configs/$name.yaml out=$WORK/runs/$name log=$WORK/logs/$name.log
  rm -rf "$out"
  local args=("+train_path=$WORK/data/train.jsonl" "valid_path=$WORK/data/valid.jsonl"
              "+output_dir=$out" "+initial_base_model_ckpt_path=$WORK/models/$fam")
  [ -n "$adapter" ] && args+=("initial_adapter_model_ckpt_path=$adapter")
  rewrite "$src" "$cfg" "${args[@]}"
  (cd "$WORK" && ulimit -v "$MEM_KB" && timeout "$TIMEOUT" "$RINGTUNE" train "$cfg" max_steps=2) > "$log" 2>&1
  rc=$?
  warns=$(grep -c 'warning\]' "$log")
  steps=$(grep -oE 'done: [0-9]+ steps' "$log" | grep -oE '[0-9]+')
  msg=$(grep -m1 -E '^(internal )?error|error\]' "$log" || true)
  [ -z "$msg" ] && [ $rc -ne 0 ] && msg=$(grep -v 'warning\]' "$log" | tail -n1)
  [ $rc -eq 124 ] && msg="timeout after ${TIMEOUT}s"
  msg=${msg//"$cfg"/CFG}
  if grep -qE '^(preference_tuning_config:|task:.*preference)' "$src"; then
    # DPO: ringtune must refuse with exit 2 and a single line of output.
    if [ $rc -eq 2 ] && [ "$(grep -vc 'warning\]' "$log")" -eq 1 ]; then result=refused_ok; else result=refusal_wrong; fi
  elif [ $rc -eq 0 ] && [ "${steps:-0}" = 2 ]; then result=trained_2
  else result=fail; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$fam" "$kind" "$rc" "$result" "$warns" "$(lora_sig "$src")" "$msg" >> "$RESULTS"
  printf '%-100s %-10s %-4s rc=%-3s %-13s warn=%-2s %s\n' "$name" "$fam" "$kind" "$rc" "$result" "$warns" "${msg:0:160}"
}

# Pass 1: every training config that does not continue from an adapter.
deferred=()
for src in "$CONFIG_DIR"/*.yaml; do
  name=$(basename "$src" .yaml)
  if grep -qE '^base_model:' "$src"; then
    printf '%s\t-\t-\t-\tskipped\t0\t-\tnot llmforge: an axolotl config\n' "$name" >> "$RESULTS"; continue
  elif grep -qE '^(base_model_id|lora_mirror_config):' "$src"; then
    printf '%s\t-\t-\t-\tskipped\t0\t-\tnot a training config: a serving (adapter) config\n' "$name" >> "$RESULTS"; continue
  elif grep -qE '^initial_adapter_model_ckpt_path:' "$src"; then
    deferred+=("$src"); continue
  fi
  run_one "$src"
done

# Pass 2: configs that continue training an adapter get the adapter of a successful LoRA
# run of the same family, preferring one whose lora_config block is identical.
for src in "${deferred[@]}"; do
  fam=$(family "$src") sig=$(lora_sig "$src")
  pick=$(awk -F'\t' -v f="$fam" -v s="$sig" '$2==f && $3=="lora" && $5=="trained_2" {if ($7==s) {print $1; exit} if (!any) any=$1} END{if (any) print any}' "$RESULTS" | head -n1)
  adapter=$WORK/runs/$pick/adapter
  [ -z "$pick" ] && adapter=$WORK/no-lora-run-of-$fam-succeeded
  run_one "$src" "$adapter"
done

# Summary.
echo
awk -F'\t' '{n[$5]++} END{for (r in n) printf "%-14s %d\n", r, n[r]}' "$RESULTS" | sort
echo
echo "Distinct messages of failed or refused runs (path and line number removed):"
awk -F'\t' '$5!="trained_2" && $5!="skipped" {m=$8; sub(/^error: CFG:[0-9]+: /, "", m); c[m]=c[m] "\n      " $1; n[m]++}
            END{for (m in n) printf "  [%d] %s%s\n", n[m], m, c[m]}' "$RESULTS"
echo
echo "results: $RESULTS; logs: $WORK/logs; rewritten configs: $WORK/configs"
