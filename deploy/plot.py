#!/usr/bin/env python3
"""Latency percentile curves from a `xdp-tcp bench` JSON result.

    plot.py results/bench-X.json out.png

One panel per latency workload (ping-pong, 64 connections, churn, 10k and 100k idle); in each, one curve per
system: the run with the median p50 of its rounds. The x axis is the percentile on a log scale of
1/(1-p), as is usual for latency distributions, so the tail gets room.
"""
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROWS = [
    ("pingpong", "64 B ping-pong, 1 connection"),
    ("rr64", "64 B request/response, 64 connections"),
    ("churn", "connect + 64 B request + close"),
    ("idle0", "1k active connections, open loop (no idle ones)"),
    ("idle10k", "10k idle connections + 1k active, open loop"),
    ("idle100k", "100k idle connections + 1k active, open loop"),
]


def median_run(runs):
    with_lat = [r for r in runs if r["client"].get("latency")]
    if not with_lat:
        return None
    with_lat.sort(key=lambda r: r["client"]["latency"]["p50"])
    return with_lat[len(with_lat) // 2]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        report = json.load(f)
    rows = [(k, t) for k, t in ROWS if any(c["case"]["row"] == k for c in report["cases"])]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 3.6 * len(rows)), squeeze=False)
    ticks = [50, 90, 99, 99.9, 99.99, 99.999]
    for ax, (row, title) in zip(axes[:, 0], rows):
        for case in report["cases"]:
            if case["case"]["row"] != row:
                continue
            run = median_run(case["runs"])
            if run is None or not run["client"].get("curve"):
                continue
            pts = [(p, us) for p, us in run["client"]["curve"] if p < 100.0]
            xs = [1.0 / (1.0 - p / 100.0) for p, _ in pts]
            ys = [us for _, us in pts]
            ax.plot(xs, ys, marker=".", label=case["case"]["system"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks])
        ax.set_xticklabels([f"{t:g}%" for t in ticks])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (µs)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"xdp-tcp vs Linux kernel, {report['machine']}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
