#!/usr/bin/env python3
"""Checks OUTPUT_DIR/report.html (`ringtune report`) against OUTPUT_DIR/metrics.jsonl.

Every <svg> of the page must parse as XML on its own (xml.etree, strict). The page must hold no
<script>, no external reference (src/href to http(s), @import, url()). The charts "loss", "lr",
"throughput", "memory" and "breakdown" must be there; each polyline series maps back, through the
chart's data-x0..x1 / data-y0..y1 and its <rect class="plot">, to the metrics values of every step
(within the 0.01 px rounding of the coordinates), and the top edge of the stacked step-time bands
is each step's ms.step. Prints what it checked; exit 1 with the first mismatch.

usage: check_report.py OUTPUT_DIR
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("check_report: " + msg)
    sys.exit(1)


def main(out):
    html = open(out + "/report.html", encoding="utf-8").read()
    rows = [json.loads(l) for l in open(out + "/metrics.jsonl") if l.strip()]
    if re.search(r"<script|@import|url\(|(src|href)\s*=\s*\"https?:", html, re.I):
        fail("the page loads or runs something")
    svgs = re.findall(r"<svg\b.*?</svg>", html, re.S)
    charts = {}
    for text in svgs:
        root = ET.fromstring(text)  # raises on malformed XML
        charts[root.get("id")] = root
    for need in ("loss", "lr", "throughput", "memory", "breakdown"):
        if need not in charts:
            fail(f"no chart '{need}' (have {sorted(charts)})")

    def mapping(root):
        rect = root.find(NS + "rect[@class='plot']")
        left, top = float(rect.get("x")), float(rect.get("y"))
        width, height = float(rect.get("width")), float(rect.get("height"))
        x0, x1 = float(root.get("data-x0")), float(root.get("data-x1"))
        y0, y1 = float(root.get("data-y0")), float(root.get("data-y1"))
        def to_value(px, py):
            return (x0 + (px - left) / width * (x1 - x0), y0 + (top + height - py) / height * (y1 - y0))
        # 0.01 px of rounding in each coordinate, in data units (with a margin)
        return to_value, 0.011 / width * (x1 - x0), 0.011 / height * (y1 - y0)

    def points(el):
        return [tuple(map(float, p.split(","))) for p in el.get("points").split()]

    checked = 0
    series_keys = {("loss", "train loss"): "loss", ("loss", "validation loss"): "valid_loss",
                   ("lr", "learning rate"): "lr", ("throughput", "tokens/s"): "tokens_per_s",
                   ("memory", "resident"): "rss_mib", ("memory", "peak"): "peak_rss_mib",
                   ("grad_norm", "gradient norm"): "grad_norm", ("mfu", "MFU (%)"): "mfu"}
    for (chart, name), key in series_keys.items():
        want = [(r["step"], r[key] * (100 if key == "mfu" else 1)) for r in rows if key in r]
        if chart not in charts:
            if want:
                fail(f"chart {chart} missing although metrics have {key}")
            continue
        root = charts[chart]
        to_value, dx, dy = mapping(root)
        lines = [p for p in root.iter(NS + "polyline") if p.get("data-name") == name]
        if not want:
            continue
        if len(lines) != 1:
            fail(f"chart {chart}: {len(lines)} series named '{name}'")
        got = [to_value(*p) for p in points(lines[0])]
        if len(got) != len(want):
            fail(f"chart {chart} series {name}: {len(got)} points for {len(want)} steps")
        for (gs, gv), (ws, wv) in zip(got, want):
            if abs(gs - ws) > dx or abs(gv - wv) > dy:
                fail(f"chart {chart} series {name}: step {ws} value {wv} drawn as step {gs:.4f} value {gv:.6g}")
        checked += 1

    root = charts["breakdown"]
    to_value, dx, dy = mapping(root)
    bands = [b for b in root.iter(NS + "polygon") if b.get("class") == "band"]
    names = [b.get("data-name") for b in bands]
    for need in ("data", "forward", "backward", "comm", "optimizer", "eval", "checkpoint", "other"):
        if need not in names:
            fail(f"breakdown: no band '{need}' (have {names})")
    top = [to_value(*p) for p in points(bands[-1])[: len(rows)]]
    for (gs, gv), r in zip(top, rows):
        if abs(gs - r["step"]) > dx or abs(gv - r["ms"]["step"]) > dy * len(bands):
            fail(f"breakdown: step {r['step']} stacked to {gv:.4f} ms, its ms.step is {r['ms']['step']}")
    print(f"check_report: {len(svgs)} SVG charts parse; {checked} series and the stacked breakdown "
          f"({len(bands)} bands) map back to {len(rows)} metrics lines")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])
