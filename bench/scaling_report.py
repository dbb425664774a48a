#!/usr/bin/env python3
"""Table, JSON and SVG of bench/scaling.sh's runs, and an analytic model of gradient communication.

    python3 bench/scaling_report.py OUTDIR RUN_DIR:NP:ZERO:LABEL [...]

Each RUN_DIR holds a metrics.jsonl of `ringtune train` (rank 0's lines). Steps after the first two
(warm-up) count: tokens/s is their tokens over their time, the breakdown is their mean ms per part
(rank 0's: data, forward, backward, comm, optimizer). Efficiency is tokens/s over np x the tokens/s
of np=1 at the same zero stage. Writes OUTDIR/scaling.json and OUTDIR/scaling.svg (no script, no
network) and prints the table, then the communication model with its assumptions.
Standard library only.
"""
import json
import os
import sys

PARTS = ["data", "forward", "backward", "comm", "optimizer"]
COLORS = {"data": "#8c564b", "forward": "#1f77b4", "backward": "#ff7f0e", "comm": "#d62728", "optimizer": "#2ca02c"}


def read_run(path):
    rows = [json.loads(line) for line in open(os.path.join(path, "metrics.jsonl"), encoding="utf-8") if line.strip()]
    rows = [r for r in rows if "tokens_per_s" in r and "ms" in r]
    if len(rows) < 3:
        sys.exit(f"{path}: fewer than 3 steps in metrics.jsonl")
    used = rows[2:]
    secs = sum(r["ms"]["step"] for r in used) / 1000.0
    tokens = sum(r["tokens_per_s"] * r["ms"]["step"] / 1000.0 for r in used)
    parts = {p: sum(r["ms"].get(p, 0.0) for r in used) / len(used) for p in PARTS}
    parts["step"] = sum(r["ms"]["step"] for r in used) / len(used)
    mfu = [r["mfu"] for r in used if "mfu" in r]
    return {"tokens_per_s": tokens / secs, "ms": parts, "steps": len(used), "mfu": sum(mfu) / len(mfu) if mfu else None}


def svg(results, path):
    w, h, left, top, bar, gap = 760, 360, 70, 40, 46, 26
    n = len(results)
    width = max(w, left + n * (bar + gap) + 40)
    top_tps = max(r["tokens_per_s"] for r in results) * 1.15
    plot_h = h - top - 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="14">ringtune data-parallel scaling: tokens/s per configuration '
           f'(bar), step-time breakdown of rank 0 (stacked, right bar), efficiency (label)</text>']
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 20}" y2="{top + plot_h}" stroke="#333"/>')
    for k in range(5):
        v = top_tps * k / 4
        y = top + plot_h - plot_h * k / 4
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#ddd"/>')
    for i, r in enumerate(results):
        x = left + 10 + i * (bar + gap)
        bh = plot_h * r["tokens_per_s"] / top_tps
        out.append(f'<rect x="{x}" y="{top + plot_h - bh:.1f}" width="{bar / 2:.1f}" height="{bh:.1f}" fill="#4c72b0">'
                   f'<title>{r["label"]}: {r["tokens_per_s"]:.1f} tokens/s</title></rect>')
        # the step's breakdown, scaled so that the whole step is the bar's height
        y = top + plot_h
        for p in PARTS:
            ph = bh * r["ms"][p] / max(r["ms"]["step"], 1e-9)
            y -= ph
            out.append(f'<rect x="{x + bar / 2:.1f}" y="{y:.1f}" width="{bar / 2:.1f}" height="{ph:.1f}" fill="{COLORS[p]}">'
                       f'<title>{p}: {r["ms"][p]:.0f} ms</title></rect>')
        eff = f'{100 * r["efficiency"]:.0f}%' if r.get("efficiency") is not None else ""
        out.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h - bh - 6:.1f}" text-anchor="middle">{eff}</text>')
        for j, line in enumerate(r["label"].split(" ")):
            out.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 14 + 12 * j}" text-anchor="middle">{line}</text>')
    lx = left
    for p in PARTS:
        out.append(f'<rect x="{lx}" y="{h - 18}" width="10" height="10" fill="{COLORS[p]}"/>'
                   f'<text x="{lx + 14}" y="{h - 9}">{p}</text>')
        lx += 90
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def comm_model():
    """Ring all-reduce of float32 gradients for Llama-3-8B shapes at 8-64 GPUs."""
    d, layers, inter, heads, kv, vocab, seq = 4096, 32, 14336, 32, 8, 128256, 2048
    hd = d // heads
    linear = layers * (d * d + 2 * d * kv * hd + d * d + 3 * d * inter)  # q, k, v, o, gate, up, down
    lora16 = layers * 16 * ((d + d) + 2 * (d + kv * hd) + (d + d) + 2 * (d + inter) + (inter + d))
    total = linear + 2 * vocab * d + (2 * layers + 1) * d
    frozen_matmul = linear + vocab * d  # lm_head counts; the embedding is a lookup
    attn = 12 * layers * d * seq
    cases = [("LoRA r16 all linear", lora16, 4 * frozen_matmul + 6 * lora16 + attn),
             ("full fine-tuning", total, 6 * (frozen_matmul) + attn)]
    peak, mfu, tokens = 989e12, 0.40, 8 * seq  # H100/H200 dense bf16; assumed MFU; 8 x 2048 tokens per GPU per step
    bw_nvlink, bw_nvls, bw_ib = 366e9, 473e9, 50e9
    print("\nGradient communication model, Llama-3-8B shapes (d 4096, 32 layers, MLP 14336, 8 KV heads, vocab 128256):")
    print(f"  bytes = 4 x trainable values (ringtune reduces float32 gradients); ring all-reduce time = 2(N-1)/N x bytes / bus bandwidth;")
    print(f"  ZeRO-1 moves the same bytes (reduce-scatter + all-gather, (N-1)/N each). Bus bandwidth: within a node 8 x H200 NCCL")
    print(f"  all-reduce {bw_nvlink / 1e9:.0f} GB/s ring ({bw_nvls / 1e9:.0f} GB/s NVLS); across nodes 400 Gb/s InfiniBand per GPU = "
          f"{bw_ib / 1e9:.0f} GB/s (the ring's slowest link). Step compute: {tokens} tokens per GPU x FLOPs/token (4 N_frozen +")
    print(f"  6 N_trained + 12 L d T) / ({peak / 1e12:.0f} TFLOP/s x MFU {mfu:.2f}); communication not overlapped with compute.")
    rows = []
    for name, n, flops_tok in cases:
        step = tokens * flops_tok / (peak * mfu)
        print(f"  {name}: {n / 1e6:,.1f} M trainable values ({4 * n / 1e9:.2f} GB of gradients), compute {step:.2f} s per step")
        for gpus in (8, 16, 32, 64):
            bw = bw_nvlink if gpus <= 8 else bw_ib
            t = 2 * (gpus - 1) / gpus * 4 * n / bw
            t_nvls = 2 * (gpus - 1) / gpus * 4 * n / bw_nvls if gpus <= 8 else None
            share = t / (t + step)
            extra = f" (NVLS {1000 * t_nvls:.1f} ms)" if t_nvls else ""
            print(f"    {gpus:3d} GPUs ({'1 node' if gpus <= 8 else f'{gpus // 8} nodes'}): all-reduce {1000 * t:8.1f} ms{extra}, "
                  f"{100 * share:5.1f}% of the step")
            rows.append({"case": name, "trainable": n, "gpus": gpus, "allreduce_ms": 1000 * t, "step_compute_s": step,
                         "share": share})
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    results = []
    for spec in sys.argv[2:]:
        path, np_, zero, label = spec.split(":", 3)
        r = read_run(path)
        r.update({"np": int(np_), "zero_stage": int(zero), "label": label})
        results.append(r)
    for r in results:
        base = [b for b in results if b["np"] == 1 and b["zero_stage"] == r["zero_stage"]]
        base = base or [b for b in results if b["np"] == 1]
        r["efficiency"] = r["tokens_per_s"] / (r["np"] * base[0]["tokens_per_s"]) if base else None
        r["speedup"] = r["tokens_per_s"] / base[0]["tokens_per_s"] if base else None
    print(f"{'':34s} {'':9s} {'':8s} {'':7s}  rank 0, ms per step")
    print(f"{'configuration':34s} {'tokens/s':>9s} {'speed-up':>8s} {'effic.':>7s}  " + " ".join(f"{p:>9s}" for p in PARTS + ["step"]))
    for r in results:
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        ef = f"{100 * r['efficiency']:.0f}%" if r["efficiency"] else "-"
        print(f"{r['label']:34s} {r['tokens_per_s']:9.1f} {sp:>8s} {ef:>7s}  " + " ".join(f"{r['ms'][p]:9.0f}" for p in PARTS + ["step"]))
    model = comm_model()
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "scaling.json"), "w", encoding="utf-8") as f:
        json.dump({"runs": results, "comm_model": model}, f, indent=1)
    svg(results, os.path.join(outdir, "scaling.svg"))
    print(f"\nwrote {os.path.join(outdir, 'scaling.json')} and {os.path.join(outdir, 'scaling.svg')}")


if __name__ == "__main__":
    main()
