#!/usr/bin/env python3
"""Compares the `logits` tensors of two safetensors files (ringtune logits, or peft_logits.py).

  python3 bench/gpu/compare_logits.py A.safetensors B.safetensors --max-abs TOL [--label TEXT]

Prints the largest and mean absolute difference, the largest logit magnitude and the share of
positions whose argmax agrees; exits 1 when the largest difference exceeds TOL.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--max-abs", type=float, required=True)
    ap.add_argument("--label", default="logits")
    a = ap.parse_args()
    from safetensors.torch import load_file

    x = load_file(a.a)["logits"].double()
    y = load_file(a.b)["logits"].double()
    if x.shape != y.shape:
        print(f"{a.label}: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        return 1
    d = (x - y).abs()
    agree = (x.argmax(-1) == y.argmax(-1)).double().mean().item()
    ok = d.max().item() <= a.max_abs
    print(f"{a.label}: max |diff| {d.max().item():.3e}, mean |diff| {d.mean().item():.3e}, "
          f"max |logit| {x.abs().max().item():.3f}, argmax agreement {agree:.4f} "
          f"(tolerance {a.max_abs:g}: {'ok' if ok else 'EXCEEDED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
