# A small LoRA training job for the multi-host and Slurm tests (source this file):
#   tiny_job_make DIR RINGTUNE ROOT   DIR/base (init-model: 2 layers, hidden 64, a tokenizer trained
#                                     on the quickstart corpus), DIR/train.jsonl (200 quickstart
#                                     chats), DIR/cfg.yaml (LoRA r4, global batch 6, 120 steps,
#                                     a checkpoint every 5 steps, per-rank log files)
#   same_losses OUT REF               the two runs logged the same steps with losses within 1e-5
#                                     relative (the distributed tests' tolerance); prints the figure
#   steps_done OUT                    steps logged in OUT/metrics.jsonl
#   wait_steps OUT N PID              waits until OUT has N steps logged; 1 if PID ended first
tiny_job_make() {
  local dir=$1 rt=$2 root=$3
  "$rt" init-model --output "$dir/base" --corpus "$root/configs/quickstart/corpus.txt" --vocab-size 400 \
    --hidden 64 --layers 2 --heads 4 --kv-heads 2 --context 128 --seed 3 > "$dir/init.log" 2>&1 ||
    { cat "$dir/init.log"; echo "tiny_job: init-model failed"; return 1; }
  head -n 200 "$root/configs/quickstart/train.jsonl" > "$dir/train.jsonl"
  cat > "$dir/cfg.yaml" <<CFG
initial_base_model_ckpt_path: $dir/base
train_path: $dir/train.jsonl
task: chat
dtype: float32
device: cpu
context_length: 128
generation_config:
  prompt_format:
    system: "{instruction}\n"
    user: "{instruction} =>"
    assistant: "{instruction}</s>"
    bos: "<s>"
train_on: assistant
num_epochs: 10
max_steps: 120
train_batch_size_per_device: 2
global_batch_size: 6
learning_rate: 3.0e-3
num_warmup_steps: 5
seed: 5
checkpoint_every_n_steps: 5
lora_config:
  r: 4
  lora_alpha: 8
  lora_dropout: 0.0
  target_modules: all-linear
logging:
  per_rank_files: true
CFG
}

same_losses() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        if "loss" in r and "step" in r: out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"steps differ: {len(a)} vs {len(b)}")
worst = max(abs(a[s] - b[s]) / abs(b[s]) for s in b)
print(f"{len(b)} steps, worst relative loss difference {worst:.2e}")
sys.exit(0 if worst < 1e-5 else 1)
PY
}

steps_done() { if [ -f "$1/metrics.jsonl" ]; then grep -c '"loss"' "$1/metrics.jsonl"; else echo 0; fi; }

wait_steps() {
  local i
  for i in $(seq 1 1200); do
    [ "$(steps_done "$1")" -ge "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
