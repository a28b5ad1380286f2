"""Accuracy against sparsity for each method, mean and spread over seeds, with the dense line (the papers' Figure 1).

    python analysis/accuracy_vs_sparsity.py runs --out accuracy.png      # a run's or a sweep's folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dpcluster.results.levels import level_records, read_levels  # noqa: E402
from dpcluster.results.summary import accuracy_by_sparsity  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="a dpcluster run --out folder, or a sweep folder")
    parser.add_argument("--out", type=Path, default=Path("accuracy_vs_sparsity.png"))
    args = parser.parse_args()
    records = level_records(read_levels(args.runs / "results"))
    if not records:
        print(f"no results under {args.runs} (expected Parquet files under {args.runs / 'results'})", file=sys.stderr)
        return 2
    levels, methods, cells = accuracy_by_sparsity(records)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        points = [(level, cells[(level, method)]) for level in levels if (level, method) in cells]
        if method == "dense":
            for _, cell in points:
                axes.axhline(100 * cell.mean, color="black", linestyle="--", label="dense")
            continue
        x = [100 * level for level, _ in points]
        mean = [100 * c.mean for _, c in points]
        std = [100 * c.std for _, c in points]
        axes.plot(x, mean, marker="o", label=method)
        axes.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    axes.set_xlabel("sparsity (% of weights pruned)")
    axes.set_ylabel("test accuracy (%)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
