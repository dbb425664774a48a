#!/usr/bin/env python3
"""Golden values for RoPE (plain, linear, llama3 scaling) and RMSNorm.

Reference formulas, transcribed from their sources (not from ringtune):
  * llama3 frequency scaling: `apply_scaling` in Meta's llama3 reference `llama/model.py`
    (per-frequency loop over wavelengths, smooth interpolation between the two cut-offs);
  * linear scaling: Hugging Face `LlamaLinearScalingRotaryEmbedding` (positions / factor);
  * rotate-half application: Hugging Face `apply_rotary_pos_emb` / `rotate_half`;
  * RMSNorm: llama2.c `model.py` `RMSNorm` (x * rsqrt(mean(x^2) + eps) * weight).
Run with Debian's python3-torch:  /usr/bin/python3 tests/golden/model/gen_rope_norm.py
Writes tests/golden/model/rope_norm.json.
"""
import json
import math
import os

import torch

torch.manual_seed(1234)


def apply_scaling(freqs, scale_factor, low_freq_factor, high_freq_factor, old_context_len):
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    new_freqs = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            new_freqs.append(freq)
        elif wavelen > low_freq_wavelen:
            new_freqs.append(freq / scale_factor)
        else:
            assert low_freq_wavelen != high_freq_wavelen
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            new_freqs.append((1 - smooth) * freq / scale_factor + smooth * freq)
    return torch.tensor(new_freqs, dtype=freqs.dtype, device=freqs.device)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope_case(name, head_dim, theta, scaling):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    positions = torch.tensor([[0, 1, 2, 7, 100, 4095, 8191, 30000]], dtype=torch.float64)
    if scaling["type"] == "llama3":
        inv_freq = apply_scaling(inv_freq, scaling["factor"], scaling["low_freq_factor"],
                                 scaling["high_freq_factor"],
                                 scaling["original_max_position_embeddings"])
    elif scaling["type"] == "linear":
        positions = positions / scaling["factor"]
    freqs = positions[..., None] * inv_freq  # [1, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = torch.randn(1, 2, positions.shape[1], head_dim, dtype=torch.float64)  # [B, H, T, hd]
    out = x * cos[:, None] + rotate_half(x) * sin[:, None]
    return {
        "name": name, "head_dim": head_dim, "theta": theta, "scaling": scaling,
        "positions": [0, 1, 2, 7, 100, 4095, 8191, 30000],
        "inv_freq": inv_freq.tolist(),
        "x": x.flatten().tolist(), "x_shape": list(x.shape), "out": out.flatten().tolist(),
    }


def rmsnorm_case(dim, eps):
    x = torch.randn(3, dim, dtype=torch.float32) * 3.0
    w = torch.randn(dim, dtype=torch.float32)
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    return {"dim": dim, "eps": eps, "x": x.flatten().tolist(), "weight": w.tolist(),
            "out": out.flatten().tolist()}


cases = {
    "rope": [
        rope_case("plain", 64, 10000.0, {"type": "none"}),
        rope_case("linear", 32, 10000.0, {"type": "linear", "factor": 4.0}),
        rope_case("llama3", 128, 500000.0, {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 8192}),
        rope_case("llama3_32", 64, 500000.0, {"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192}),
    ],
    "rmsnorm": [rmsnorm_case(64, 1e-5), rmsnorm_case(48, 1e-6)],
}
out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rope_norm.json")
with open(out_path, "w") as f:
    json.dump(cases, f)
print("wrote", out_path)
