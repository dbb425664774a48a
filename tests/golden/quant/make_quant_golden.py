#!/usr/bin/python3
"""Golden values for ringtune's 4-bit NF4 and 8-bit blockwise quantization (tests/test_quant.cpp).

Derived here from their definitions, independently of ringtune's C++:
  - NF4 (QLoRA, Dettmers et al. 2023; bitsandbytes create_normal_map(offset=0.9677083,
    use_extra_value=True)): 8 positive quantiles norm.ppf(linspace(offset, 0.5, 9)[:-1]), 7
    negative ones -norm.ppf(linspace(offset, 0.5, 8)[:-1]), and 0, normalised by the largest.
    linspace is evaluated in float32 as torch.linspace is. Needs Debian's python3-scipy.
  - bitsandbytes's table as published in its functional.get_4bit_type("nf4") (copied by hand
    into this script, for the test to hold ringtune's table to both).
  - The dynamic 8-bit maps of bitsandbytes create_dynamic_map(signed, max_exponent_bits=7,
    total_bits=8): for exponent i in 0..6, the midpoints of linspace(0.1, 1, k) scaled by
    10^(i-6) (k = 2^i + 1 signed, 2^(i+1) + 1 unsigned), negated too when signed, plus 0 and 1,
    in float32 as torch computes it.
Run (Debian's python3, /usr/bin/python3): /usr/bin/python3 tests/golden/quant/make_quant_golden.py > tests/golden/quant/quant_golden.json
"""
import json

import numpy as np
from scipy.stats import norm


def linspace32(a, b, n):
    # torch.linspace in float32 (its CPU kernel): step = (end - start) / (n - 1); the first half
    # start + i * step, the second half end - (n - 1 - i) * step, all in float32.
    a, b = np.float32(a), np.float32(b)
    step = (b - a) / np.float32(n - 1)
    half = n // 2
    return np.array([a + np.float32(i) * step if i < half else b - np.float32(n - 1 - i) * step
                     for i in range(n)], dtype=np.float32)


def normal_map(offset=0.9677083):
    v1 = norm.ppf(linspace32(offset, 0.5, 9)[:-1].astype(np.float64))
    v3 = -norm.ppf(linspace32(offset, 0.5, 8)[:-1].astype(np.float64))
    v = np.concatenate([v1, [0.0], v3]).astype(np.float32)  # torch.Tensor(list) is float32
    v = np.sort(v)
    return (v / v.max()).astype(np.float32)


def dynamic_map(signed, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        k = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else \
            2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        b = linspace32(0.1, 1, k)
        means = (b[:-1] + b[1:]) / np.float32(2.0)
        scale = 10.0 ** (-(max_exponent_bits - 1) + i)
        # torch multiplies a float32 tensor by a Python float in float32
        data += list(np.float32(scale) * means)
        if signed:
            data += list(np.float32(-scale) * means)
    data += [0.0, 1.0]
    assert len(data) == 2 ** total_bits
    return sorted(np.float32(x) for x in data)


PUBLISHED_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                 -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                 0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]

out = {
    "nf4_from_normal_quantiles": [float(x) for x in normal_map()],
    "nf4_published_by_bitsandbytes": PUBLISHED_NF4,
    "dynamic_signed": [float(x) for x in dynamic_map(True)],
    "dynamic_unsigned": [float(x) for x in dynamic_map(False)],
    # bitsandbytes tests/test_functional.py test_4bit_quant: (mean, std) of the mean absolute and
    # mean relative error of quantize/dequantize of randn(1024, 1024), NF4, blocksize 64; the
    # test fails above mean + 7 std.
    "nf4_randn_1024_block64_err": [0.072798, 0.000074],
    "nf4_randn_1024_block64_rel_err": [0.203339, 0.000340],
}
print(json.dumps(out, indent=1))
