#!/usr/bin/env python3
"""Logits of a base model with a PEFT adapter, computed by transformers + peft (the reference for
ringtune's PEFT export): the same token ids as `ringtune logits --adapter` reads.

  python3 bench/gpu/peft_logits.py --base DIR --adapter DIR --input IN.safetensors --output OUT.safetensors

IN holds int64 `tokens` [B, T]; OUT gets float32 `logits` [B, T, V]. float32, on the GPU when there
is one. Needs torch, safetensors, transformers and peft (present on the GPU machine).
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(a.base, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(model, a.adapter).to(device).eval()
    tokens = load_file(a.input)["tokens"].to(device)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.float().cpu().contiguous()
    save_file({"logits": logits}, a.output)
    print(f"peft + transformers: logits {tuple(logits.shape)} from {a.base} + {a.adapter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
