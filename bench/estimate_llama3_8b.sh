#!/usr/bin/env bash
# `ringtune estimate` for Llama-3.1-8B's shape (its config.json values: hidden 4096, 32 layers,
# 32 heads / 8 key-value, MLP 14336, vocabulary 128256, llama3 RoPE scaling), micro-batch 2 at
# sequence 2048, bfloat16, gradient checkpointing, on a GPU with fused attention, LoRA r 8 on
# q/v/o and the MLP (torchtune's 8B_lora_single_device targets), then QLoRA. Only config.json is
# needed: no weights are read.
#   bash bench/estimate_llama3_8b.sh [extra key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
rt=${RINGTUNE_BIN:-build/ringtune}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/model"
cat > "$work/model/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
 "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
 "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"},
 "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001}
JSON
echo '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}' > "$work/train.jsonl"
cat > "$work/lora.yaml" <<'YAML'
initial_base_model_ckpt_path: model
train_path: train.jsonl
output_dir: out
dtype: bfloat16
context_length: 2048
generation_config: {prompt_format: llama2}
train_batch_size_per_device: 2
gradient_checkpointing: true
lora_config: {r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: [q_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
YAML
echo "== LoRA"
"$rt" estimate "$work/lora.yaml" --device cuda --attention fused "$@"
echo
echo "== QLoRA"
"$rt" estimate "$work/lora.yaml" quantization=nf4 --device cuda --attention fused --no-grid "$@"
