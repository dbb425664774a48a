#!/usr/bin/env python3
"""A random Llama-architecture model as a Hugging Face directory, for timing ringtune on a GPU.

Writes OUT/config.json (LlamaForCausalLM), OUT/model.safetensors (weights drawn on the GPU when
there is one: normal(0, 0.02) for matrices, ones for norms) and copies the tokenizer files of
--tokenizer. Needs torch and safetensors (present on the GPU machine, not on the CI machine).

  python3 bench/gpu/random_llama.py OUT --tokenizer DIR [--hidden 4096 --intermediate 14336
      --layers 8 --heads 32 --kv-heads 8 --context 4096 --dtype bfloat16 --seed 0]

The vocabulary size is the tokenizer's (tokenizer.json's model vocab plus added tokens).
"""
import argparse
import json
import os
import shutil
import sys


def vocab_size(tokenizer_dir):
    with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json (+ tokenizer_config.json)")
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    vocab = vocab_size(a.tokenizer)
    os.makedirs(a.out, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": a.hidden, "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "vocab_size": vocab, "max_position_embeddings": a.context, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 128000 if vocab > 128000 else 1, "eos_token_id": 128001 if vocab > 128001 else 2,
        "torch_dtype": a.dtype,
    }
    with open(os.path.join(a.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)

    dtype = getattr(torch, a.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(a.seed)
    head_dim = a.hidden // a.heads
    shapes = {"model.embed_tokens.weight": (vocab, a.hidden), "model.norm.weight": (a.hidden,),
              "lm_head.weight": (vocab, a.hidden)}
    for i in range(a.layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (a.heads * head_dim, a.hidden),
            p + "self_attn.k_proj.weight": (a.kv_heads * head_dim, a.hidden),
            p + "self_attn.v_proj.weight": (a.kv_heads * head_dim, a.hidden),
            p + "self_attn.o_proj.weight": (a.hidden, a.heads * head_dim),
            p + "mlp.gate_proj.weight": (a.intermediate, a.hidden),
            p + "mlp.up_proj.weight": (a.intermediate, a.hidden),
            p + "mlp.down_proj.weight": (a.hidden, a.intermediate),
            p + "input_layernorm.weight": (a.hidden,),
            p + "post_attention_layernorm.weight": (a.hidden,),
        })
    tensors, params = {}, 0
    for name, shape in shapes.items():
        if len(shape) == 1:
            t = torch.ones(shape, dtype=dtype)
        else:
            t = torch.empty(shape, dtype=dtype, device=device).normal_(0.0, 0.02, generator=gen).cpu()
        tensors[name] = t.contiguous()
        params += t.numel()
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(a.out, name))
    print(f"random llama: {a.layers} layers, hidden {a.hidden}, vocab {vocab}, {params / 1e9:.2f} B parameters "
          f"({a.dtype}) in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
