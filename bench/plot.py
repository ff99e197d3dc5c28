#!/usr/bin/env python3
"""Plot per-attach time against the number of ports on the bridge (docs/performance-attach.png).

Reads the CSVs written by ``bench/bench_cli.py cli --csv A`` and
``bench/bench_cli.py flat --csv B`` (columns: tool, ports, seconds) and draws
one series per tool.  ``--batch``: the CSVs of ``bench/bench_apply.py --csv``
(columns: tool, n, seconds) instead, total time against N, log-log
(docs/performance-apply.png).  Needs matplotlib (``pip install .[bench]``).

Usage::

    .venv/bin/python bench/plot.py /tmp/cli.csv /tmp/flat.csv -o docs/performance-attach.png
    .venv/bin/python bench/plot.py --batch /tmp/apply.csv -o docs/performance-apply.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

STYLE = {
    "ovs-docker": ("tab:red", "o"),
    "ovsfab (agent)": ("tab:blue", "s"),
    "ovsfab (in-process)": ("tab:orange", "^"),
    "ovsfab (agent, socket)": ("tab:cyan", "."),
    "ovsfab (shell, agent)": ("tab:blue", "s"),
}
LABEL = {
    "ovs-docker": "ovs-docker add-port (shell)",
    "ovsfab (agent)": "ovsfab attach (shell, agent running)",
    "ovsfab (in-process)": "ovsfab attach (shell, no agent)",
    "ovsfab (agent, socket)": "ovsfab attach: the agent's own time",
    "ovsfab (shell, agent)": "ovsfab attach (shell, agent running)",
}


def load(paths: List[str]) -> Dict[str, List[Tuple[int, float]]]:
    series: Dict[str, List[Tuple[int, float]]] = defaultdict(list)
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                series[row["tool"]].append((int(row["ports"]), float(row["seconds"]) * 1000))
    return series


def plot_batch(plt, paths: List[str], output: str) -> None:
    """Total time of N attachments against N, one line per tool, with the ratio at each shared N."""
    series: Dict[str, Dict[int, float]] = defaultdict(dict)
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                series[row["tool"]][int(row["n"])] = float(row["seconds"])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    colors = {"ovs-docker": "tab:red", "ovsfab apply": "tab:blue", "ovsfab apply (Docker)": "tab:cyan"}
    for tool, points in sorted(series.items()):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", color=colors.get(tool, "gray"),
                label={"ovs-docker": "ovs-docker add-port, looped (Docker containers)",
                       "ovsfab apply": "ovsfab apply (named netns, IPv6 off)",
                       "ovsfab apply (Docker)": "ovsfab apply (the same Docker containers)"}.get(tool, tool))
    ours, theirs = series.get("ovsfab apply", {}), series.get("ovs-docker", {})
    for n in sorted(set(ours) & set(theirs)):
        ax.annotate(f"{theirs[n] / ours[n]:.0f}x", (n, ours[n]), textcoords="offset points", xytext=(4, 6),
                    fontsize=8, color="tab:blue")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("containers attached (N)")
    ax.set_ylabel("total time (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("N attachments: one ovsfab apply against an ovs-docker loop (netdev, simulated host)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(output)
    print(f"wrote {output}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("-o", "--output", default=None)
    ap.add_argument("--batch", action="store_true", help="bench_apply.py CSVs: total time against N")
    args = ap.parse_args()
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("plot: matplotlib is missing; pip install '.[bench]'", file=sys.stderr)
        return 2
    if args.batch:
        plot_batch(plt, args.csv, args.output or "docs/performance-apply.png")
        return 0
    args.output = args.output or "docs/performance-attach.png"
    series = load(args.csv)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    labelled = set()
    for tool, points in sorted(series.items()):
        color, marker = STYLE.get(tool, ("gray", "x"))
        label = LABEL.get(tool, tool)
        xs, ys = zip(*sorted(points))
        small = tool == "ovsfab (agent, socket)"
        ax.scatter(xs, ys, s=4 if small else 18, color=color, marker=marker, alpha=0.5 if small else 0.9,
                   label=None if label in labelled else label)
        labelled.add(label)
    ax.set_xlabel("ports on the bridge before the attach")
    ax.set_ylabel("time per attach (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Per-attach time against bridge size (netdev datapath, simulated host)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
