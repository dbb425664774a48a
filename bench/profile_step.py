#!/usr/bin/env python3
"""Sums a libtorch operator trace by operator: self time (the time in an operator outside the
operators it called), calls, and share of the traced step.

usage: bench/profile_step.py TRACE [TRACE ...] [--top N]
TRACE: the Chrome-format file `RINGTUNE_PROFILE=FILE[:STEP] ringtune train ...` writes (one per
rank on several ranks: give them all; the figures are then per rank, averaged).

Self time is computed per thread from the nesting of the complete ("X") events: an event's time
minus that of the events inside it on the same thread. Work libtorch hands to its OpenMP
threads is inside the operator that started it. The autograd engine runs backward on its own
thread: its events are nested the same way.
"""
import json
import sys
from collections import defaultdict


def self_times(events):
    """{name: [self_us, calls]} and the traced span (us) of one trace."""
    by_thread = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    out = defaultdict(lambda: [0.0, 0])
    lo, hi = float("inf"), float("-inf")
    for evs in by_thread.values():
        evs.sort(key=lambda x: (x[0], -x[1]))
        stack = []  # [end, name, child_us]

        def close(item):
            end, name, start, child = item
            out[name][0] += (end - start) - child
            out[name][1] += 1
            if stack:
                stack[-1][3] += end - start

        for ts, dur, name in evs:
            lo, hi = min(lo, ts), max(hi, ts + dur)
            while stack and stack[-1][0] <= ts:
                close(stack.pop())
            stack.append([ts + dur, name, ts, 0.0])
        while stack:
            close(stack.pop())
    return out, hi - lo


def main(argv):
    top = 30
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i : i + 2]
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    total = defaultdict(lambda: [0.0, 0])
    span = 0.0
    for path in argv:
        with open(path, encoding="utf-8") as f:
            text = f.read().rstrip().rstrip(",")
        if not text.endswith("]"):  # the legacy writer may leave the list open
            text += "]"
        data = json.loads(text)
        events = data["traceEvents"] if isinstance(data, dict) else data
        t, s = self_times(events)
        span += s
        for k, (us, n) in t.items():
            total[k][0] += us
            total[k][1] += n
    n = len(argv)
    busy = sum(v[0] for v in total.values()) / n
    print(f"traced span {span / n / 1000:.1f} ms per rank, {busy / 1000:.1f} ms of it inside operators "
          f"(summed over threads)")
    print(f"{'self ms':>9} {'share':>6} {'calls':>7}  operator")
    for name, (us, calls) in sorted(total.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{us / n / 1000:9.1f} {100 * us / n / max(busy, 1e-9):5.1f}% {calls // n:7d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
