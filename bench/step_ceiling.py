#!/usr/bin/env python3
"""The fastest a LoRA training step can be on this machine's GEMM: times every matrix product one
optimizer step of the compare_peer shapes must do, alone, into preallocated outputs, and sums
them, then puts every product at the best GEMM rate seen (the roof). No trainer doing this
arithmetic on this GEMM steps faster than all of it at the roof with nothing else, so that bounds
tokens/s, and with a measured peer figure it bounds the ratio any trainer can reach.

usage: bench/step_ceiling.py [--shape small|medium] [--threads N] [--micro-rows R]
                             [--ringtune TOK_S] [--peer TOK_S]

Runs on Debian's python3-torch (the same OpenBLAS and oneDNN as the libtorch ringtune links).
Shapes and batches are those of ../shared/bench/compare_peer.sh (float32, LoRA r16 on all seven
projections, frozen embedding and output layer, loss on every position):
  small  d256 L4 heads 8/4 MLP 688 vocab 4096 seq 256, 8 sequences a step
  medium d512 L8 heads 8/8 MLP 1376 vocab 32000 seq 512, 4 sequences a step
--micro-rows: sequences per forward/backward pass (default the whole batch, as compare_peer's
one-process ringtune run and the peer take it; np=2 ranks take half each).
What is counted per micro-batch of n tokens:
  each projection W [out, in]: forward x W^T; input gradient dY W (not for layer 0's q, k, v:
    their input, the frozen embedding, needs no gradient); no weight gradient (frozen);
  its adapter (A [r, in], B [out, r]): x A^T, y += u B^T; dY^T u, dY B, du^T x, and dx += du A
    where the input gradient is;
  attention, per layer: Q K^T and P V forward, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q
    backward, timed as dense batched products over all heads and counted at half (a causal kernel
    that skips the upper triangle: ringtune's does, the peer's dense one does not);
  output layer: logits x E^T and the input gradient dlogits E.
Not counted: everything that is not a product (norms, rotary, softmax, SwiGLU, the loss's
exponentials, the optimizer). The thin adapter products and dense attention run well below the
roof as timed (ringtune's attention kernel runs faster than these dense ones); the ceiling gives
them the roof too, so it is a bound, not an estimate.
"""
import argparse
import time

import torch

SHAPES = {
    "small": dict(d=256, layers=4, heads=8, kv=4, ffn=688, vocab=4096, seq=256, batch=8, micro=8),
    "medium": dict(d=512, layers=8, heads=8, kv=8, ffn=1376, vocab=32000, seq=512, batch=4, micro=4),
}
RANK = 16


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=SHAPES, default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--micro-rows", type=int, default=0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--ringtune", type=float, default=0.0, help="measured ringtune tokens/s")
    ap.add_argument("--peer", type=float, default=0.0, help="measured peer tokens/s")
    a = ap.parse_args()
    s = SHAPES[a.shape]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = a.micro_rows or s["micro"]
    if s["batch"] % rows:
        ap.error(f"--micro-rows {rows} does not divide the batch of {s['batch']}")
    n = rows * s["seq"]
    micros = s["batch"] // rows
    d, hd = s["d"], s["d"] // s["heads"]
    kvd = s["kv"] * hd
    g = torch.randn

    # (name, FLOPs per micro-batch, ms per micro-batch)
    table = []

    def add(name, flops, ms):
        table.append((name, flops, ms))

    projections = [("q", d, d), ("k", d, kvd), ("v", d, kvd), ("o", d, d),
                   ("gate", d, s["ffn"]), ("up", d, s["ffn"]), ("down", s["ffn"], d)]
    L = s["layers"]
    for name, i, o in projections:
        x, w, dy = g(n, i), g(o, i), g(n, o)
        y, dx = torch.empty(n, o), torch.empty(n, i)
        fw = median_ms(lambda: torch.mm(x, w.t(), out=y), a.reps)
        bw = median_ms(lambda: torch.mm(dy, w, out=dx), a.reps)
        with_input_grad = L - 1 if name in ("q", "k", "v") else L
        add(f"{name} {i}->{o} forward", L * 2 * n * i * o, L * fw)
        add(f"{name} {i}->{o} input gradient", with_input_grad * 2 * n * i * o, with_input_grad * bw)
        A, B, u, du = g(RANK, i), g(o, RANK), g(n, RANK), g(n, RANK)
        ub, dA, dB = torch.empty(n, RANK), torch.empty(RANK, i), torch.empty(o, RANK)
        lf = median_ms(lambda: (torch.mm(x, A.t(), out=ub), y.addmm_(u, B.t(), alpha=2.0)), a.reps)
        lw = median_ms(lambda: (torch.mm(dy.t(), u, out=dB), torch.mm(dy, B, out=ub),
                                torch.mm(du.t(), x, out=dA)), a.reps)
        lx = median_ms(lambda: dx.addmm_(du, A), a.reps)
        add(f"{name} adapter forward", L * 2 * n * RANK * (i + o), L * lf)
        add(f"{name} adapter backward", L * 2 * n * RANK * (2 * o + i) + with_input_grad * 2 * n * RANK * i,
            L * lw + with_input_grad * lx)

    # attention: rows x heads independent T x T problems, half of each square counted
    bh, T = rows * s["heads"], s["seq"]
    q, k, v, do = g(bh, T, hd), g(bh, T, hd), g(bh, T, hd), g(bh, T, hd)
    p, ds = torch.softmax(g(bh, T, T), -1), g(bh, T, T)
    sc, o_, d1 = torch.empty(bh, T, T), torch.empty(bh, T, hd), torch.empty(bh, T, hd)
    af = median_ms(lambda: (torch.bmm(q, k.transpose(1, 2), out=sc), torch.bmm(p, v, out=o_)), a.reps)
    ab = median_ms(lambda: (torch.bmm(do, v.transpose(1, 2), out=sc), torch.bmm(p.transpose(1, 2), do, out=d1),
                            torch.bmm(ds, k, out=o_), torch.bmm(ds.transpose(1, 2), q, out=d1)), a.reps)
    square = 2 * bh * T * T * hd
    add("attention forward (causal half)", L * 2 * square // 2, L * af / 2)
    add("attention backward (causal half)", L * 4 * square // 2, L * ab / 2)

    x, e, dl = g(n, d), g(s["vocab"], d), g(n, s["vocab"])
    logits, dx = torch.empty(n, s["vocab"]), torch.empty(n, d)
    add(f"output layer {d}->{s['vocab']} forward", 2 * n * d * s["vocab"],
        median_ms(lambda: torch.mm(x, e.t(), out=logits), a.reps))
    add("output layer input gradient", 2 * n * d * s["vocab"],
        median_ms(lambda: torch.mm(dl, e, out=dx), a.reps))

    tokens = s["batch"] * s["seq"]
    print(f"shape {a.shape}, float32, {a.threads} thread(s), micro-batch {rows} x {s['seq']} tokens, "
          f"{micros} micro-batch(es) = {tokens} tokens a step")
    print(f"{'product (all layers)':40s} {'GFLOP/step':>10s} {'ms/step':>9s} {'GFLOP/s':>8s}")
    tot_f = tot_ms = 0.0
    for name, f, ms in table:
        f, ms = f * micros, ms * micros
        tot_f, tot_ms = tot_f + f, tot_ms + ms
        print(f"{name:40s} {f / 1e9:10.2f} {ms:9.1f} {f / ms / 1e6:8.1f}")
    # The roof: the best rate this GEMM reached here, on the step's products or a large square one.
    sq, sq_out = g(2048, 2048), torch.empty(2048, 2048)
    roof = max([2 * 2048 ** 3 / median_ms(lambda: torch.mm(sq, sq, out=sq_out), a.reps) / 1e6] +
               [f / ms / 1e6 for _, f, ms in table])
    print(f"{'all products, as timed':40s} {tot_f / 1e9:10.2f} {tot_ms:9.1f} {tot_f / tot_ms / 1e6:8.1f}")
    print(f"FLOPs per token (products, causal half): {tot_f / tokens / 1e6:.1f} M")
    print(f"as timed: {tokens / (tot_ms / 1e3):.0f} tokens/s for a step of only these products")
    ceiling = tokens / (tot_f / (roof * 1e9))
    print(f"ceiling: {ceiling:.0f} tokens/s, every product at the best rate seen ({roof:.1f} GFLOP/s), "
          f"nothing else")
    if a.ringtune:
        print(f"ringtune {a.ringtune:.0f} tokens/s = {a.ringtune / ceiling:.0%} of the ceiling")
    if a.peer:
        print(f"peer {a.peer:.0f} tokens/s = {a.peer / ceiling:.0%} of the ceiling; "
              f"no trainer on this GEMM can be more than {ceiling / a.peer:.2f}x the peer")
        if a.ringtune:
            print(f"ringtune / peer = {a.ringtune / a.peer:.2f}x")


if __name__ == "__main__":
    main()
