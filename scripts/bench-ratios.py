#!/usr/bin/env python3
"""Prints criterion results of one run as a table of means and ratios.

Usage: scripts/bench-ratios.py GROUP BASELINE [OTHER...]
Reads target/criterion/GROUP/<bench>/<input>/new/estimates.json (written by `cargo bench`) and
prints, per input, each bench's mean and its ratio to BASELINE's mean on the same input.
"""
import json
import pathlib
import sys


def mean_ns(path):
    """The estimate criterion prints: the slope of time over iterations where it has one,
    else the mean."""
    with open(path) as f:
        e = json.load(f)
    return (e.get("slope") or e["mean"])["point_estimate"]


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    group, baseline, *others = sys.argv[1:]
    root = pathlib.Path("target/criterion") / group
    benches = [baseline] + (others or sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in (baseline, "report")))
    inputs = sorted({p.name for b in benches for p in (root / b).iterdir() if (p / "new").is_dir()})
    print(f"| input | " + " | ".join(benches) + " |")
    print("|---|" + "---|" * len(benches))
    for i in inputs:
        base = root / baseline / i / "new/estimates.json"
        if not base.exists():
            continue
        b = mean_ns(base)
        cells = []
        for bench in benches:
            e = root / bench / i / "new/estimates.json"
            if e.exists():
                m = mean_ns(e)
                cells.append(human(m) if bench == baseline else f"{human(m)} ({m / b:.2f}×)")
            else:
                cells.append("-")
        print(f"| {i} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
