#!/usr/bin/env python3
"""Write a tiny random Llama-family model directory in Hugging Face layout.

    python3 bench/make_tiny_model.py TOKENIZER_DIR OUT_DIR [--model-type llama|mistral]
                                     [--hidden 32] [--layers 2] [--seed 0]
                                     [--heads 4] [--kv-heads 2] [--intermediate 2*hidden]

e.g. TinyLlama-1.1B's shape: --hidden 2048 --intermediate 5632 --layers 22 --heads 32
--kv-heads 4 with Llama 2's tokenizer.model (vocab 32000); use a python3 with numpy for that.

OUT_DIR gets config.json, model.safetensors (float32, Hugging Face Llama parameter
names, untied lm_head) and a copy of every file in TOKENIZER_DIR. The vocabulary size
is the tokenizer's: tokenizer.json's model.vocab plus added_tokens, or 32000 for a
SentencePiece tokenizer.model (Llama 2). Only the standard library is needed; numpy
is used for speed when it is installed.
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import sys


def tokenizer_info(tok_dir):
    """(vocab_size, bos_id, eos_id) of the tokenizer in tok_dir."""
    tj = os.path.join(tok_dir, "tokenizer.json")
    if not os.path.exists(tj):
        if os.path.exists(os.path.join(tok_dir, "tokenizer.model")):
            return 32000, 1, 2  # Llama 2 SentencePiece: <s>=1, </s>=2
        sys.exit(f"{tok_dir}: no tokenizer.json or tokenizer.model")
    with open(tj, encoding="utf-8") as f:
        t = json.load(f)
    ids = dict(t["model"]["vocab"])
    for a in t.get("added_tokens", []):
        ids[a["content"]] = a["id"]
    vocab = max(ids.values()) + 1

    def special(name, default):
        # tokenizer_config.json names bos/eos as a string or {"content": ...}
        cfg_path = os.path.join(tok_dir, "tokenizer_config.json")
        if not os.path.exists(cfg_path):
            return default
        with open(cfg_path, encoding="utf-8") as f:
            tok = json.load(f).get(name)
        if isinstance(tok, dict):
            tok = tok.get("content")
        return ids.get(tok, default)

    return vocab, special("bos_token", 1), special("eos_token", 2)


def random_floats(n, std, rng):
    """n float32 values, uniform with the given standard deviation, as bytes."""
    half = std * 3 ** 0.5
    try:
        import numpy as np
        g = np.random.default_rng(rng.randrange(2**32))
        return g.uniform(-half, half, n).astype("<f4").tobytes()
    except ImportError:
        from array import array
        a = array("f", (rng.uniform(-half, half) for _ in range(n)))
        if sys.byteorder != "little":
            a.byteswap()
        return a.tobytes()


def ones(n):
    return struct.pack(f"<{n}f", *([1.0] * n))


def write_safetensors(path, tensors):
    """tensors: list of (name, shape, raw little-endian float32 bytes)."""
    header, offset = {}, 0
    for name, shape, data in tensors:
        assert len(data) == 4 * math.prod(shape), name
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, _, data in tensors:
            f.write(data)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tokenizer_dir")
    p.add_argument("out_dir")
    p.add_argument("--model-type", choices=["llama", "mistral"], default="llama")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=0, help="MLP width (default 2 * hidden)")
    a = p.parse_args()

    vocab, bos, eos = tokenizer_info(a.tokenizer_dir)
    heads, kv_heads = a.heads, a.kv_heads
    d, ff, hd = a.hidden, a.intermediate or 2 * a.hidden, a.hidden // heads
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[a.model_type]
    config = {
        "architectures": [arch], "model_type": a.model_type,
        "hidden_size": d, "intermediate_size": ff,
        "num_hidden_layers": a.layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": vocab,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0 if vocab > 100000 else 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float32",
    }

    rng = random.Random(a.seed)
    w = lambda *shape: (shape, random_floats(shape[0] * shape[1], 0.05, rng))
    tensors = [("model.embed_tokens.weight", *w(vocab, d))]
    for i in range(a.layers):
        L = f"model.layers.{i}."
        tensors += [
            (L + "self_attn.q_proj.weight", *w(heads * hd, d)),
            (L + "self_attn.k_proj.weight", *w(kv_heads * hd, d)),
            (L + "self_attn.v_proj.weight", *w(kv_heads * hd, d)),
            (L + "self_attn.o_proj.weight", *w(d, heads * hd)),
            (L + "mlp.gate_proj.weight", *w(ff, d)),
            (L + "mlp.up_proj.weight", *w(ff, d)),
            (L + "mlp.down_proj.weight", *w(d, ff)),
            (L + "input_layernorm.weight", (d,), ones(d)),
            (L + "post_attention_layernorm.weight", (d,), ones(d)),
        ]
    tensors += [("model.norm.weight", (d,), ones(d)),
                ("lm_head.weight", *w(vocab, d))]

    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(a.out_dir, "model.safetensors"), tensors)
    for name in os.listdir(a.tokenizer_dir):
        src = os.path.join(a.tokenizer_dir, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(a.out_dir, name))  # not copy2: fixtures are read-only
    print(f"{a.out_dir}: {a.model_type}, vocab {vocab}, hidden {d}, {a.layers} layers")


if __name__ == "__main__":
    main()
