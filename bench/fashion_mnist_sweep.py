"""Figure 1 of the first paper on Fashion-MNIST, from the shipped sweep ``jobs/fashion_mnist.toml``: accuracy by
sparsity and method (mean ± std over seeds), the papers' time-to-mask at the sparsest level where distilled
pruning holds IMP's accuracy, and the stability and sharpness of the analysed levels.

Runs ``dpcluster sweep SPEC --device cpu --out SWEEP`` (timed; a folder that already holds some of the sweep's
jobs resumes, and the JSON says so), writes the sweep's report (``SWEEP/report``: every figure, summary.csv,
report.html), copies its PNG figures to ``--figures`` and writes JSON (default
bench/results/fashion_mnist_sweep.json) with the machine, the thread count and the wall time. ``--reuse`` reads a
finished folder without running anything (the wall time is then the one recorded when the sweep ran).

For each pair of an IMP series and a distilled-pruning series, "equal accuracy" is the sparsest validated level at
which distilled pruning's mean accuracy is within ``--within`` points of IMP's; there both methods' mask search
(every inner loop up to that mask) and time-to-mask (the search plus the final real-data training) are given in
seconds and training examples, mean over seeds, with the ratio IMP / distilled.

    python bench/fashion_mnist_sweep.py        # needs apt-get install dataset-fashion-mnist; ~45 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.distill_quality import cpu_name  # noqa: E402

WALL_FILE = "bench_wall.json"


def run_sweep(spec: Path, sweep: Path) -> dict:
    """Run the sweep to the end, timed; what the folder held before says whether this was a fresh run."""
    fresh = not (sweep / "manifest.json").exists()
    began = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "dpcluster", "sweep", str(spec), "--device", "cpu", "--out", str(sweep)],
                   check=True, env=env)
    timing = {"wall_seconds": time.perf_counter() - began, "fresh": fresh, "finished": time.time()}
    (sweep / WALL_FILE).write_text(json.dumps(timing) + "\n")
    return timing


def _number(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def accuracy_table(summary) -> list[dict]:
    return [{"series": row["series"], "sparsity": round(row["sparsity"], 4), "accuracy": _number(row["accuracy_mean"]),
             "std": _number(row["accuracy_std"]), "seeds": int(row["seeds"]),
             "mask_search_seconds": _number(row["mask_search_seconds"]),
             "time_to_mask_seconds": _number(row["time_to_mask_seconds"])}
            for row in summary.to_dict("records")]


def time_to_mask(levels, within: float) -> list[dict]:
    """At the sparsest level where each distilled series holds each IMP series' accuracy within ``within`` points:
    both searches and time-to-masks, mean over seeds, and the ratios."""
    frame = levels.copy()
    frame["sparsity"] = frame["sparsity"].round(6)
    means = frame.groupby(["series", "sparsity"]).agg(
        accuracy=("test_accuracy", "mean"), search_seconds=("mask_search_seconds", "mean"),
        search_examples=("mask_search_examples", "mean"), time_to_mask_seconds=("time_to_mask_seconds", "mean"),
        time_to_mask_examples=("time_to_mask_examples", "mean"), seeds=("seed", "count"))
    series = sorted(frame["series"].unique())
    out = []
    for imp in (s for s in series if s.startswith("imp")):
        for distilled in (s for s in series if s.startswith("distilled")):
            a, b = means.loc[imp], means.loc[distilled]
            shared = sorted(set(a.index) & set(b.index))
            equal = [s for s in shared if b.loc[s, "accuracy"] >= a.loc[s, "accuracy"] - within / 100]
            row = {"imp": imp, "distilled": distilled, "equal_accuracy_sparsity": equal[-1] if equal else None}
            if equal:
                at = equal[-1]
                for name, side in (("imp_at", a.loc[at]), ("distilled_at", b.loc[at])):
                    row[name] = {key: _number(side[key]) for key in side.index}
                row["search_speedup"] = a.loc[at, "search_seconds"] / b.loc[at, "search_seconds"]
                row["search_examples_ratio"] = a.loc[at, "search_examples"] / b.loc[at, "search_examples"]
                row["time_to_mask_speedup"] = a.loc[at, "time_to_mask_seconds"] / b.loc[at, "time_to_mask_seconds"]
                row["time_to_mask_examples_ratio"] = (a.loc[at, "time_to_mask_examples"]
                                                      / b.loc[at, "time_to_mask_examples"])
            out.append(row)
    return out


def analysis_table(data) -> list[dict]:
    """Per series and analysed level: the error barrier and the Hessian's top eigenvalue and trace, mean ± std
    over seeds."""
    rows = {}
    stability = data.analyses.get("stability")
    if stability is not None and not stability.empty:
        per_seed = stability.assign(sparsity=stability["sparsity"].round(6)).groupby(
            ["series", "sparsity", "seed"])["instability"].first().reset_index()
        for (series, sparsity), group in per_seed.groupby(["series", "sparsity"]):
            rows[(series, sparsity)] = {"series": series, "sparsity": sparsity,
                                        "instability": float(group["instability"].mean()),
                                        "instability_std": float(group["instability"].std(ddof=0)),
                                        "instability_by_seed": [float(v) for v in group["instability"]]}
    sharp = data.analyses.get("sharpness")
    if sharp is not None and not sharp.empty:
        sharp = sharp.assign(sparsity=sharp["sparsity"].round(6))
        for (series, sparsity), group in sharp.groupby(["series", "sparsity"]):
            row = rows.setdefault((series, sparsity), {"series": series, "sparsity": sparsity})
            row.update(top_eigenvalue=float(group["top_eigenvalue"].mean()), trace=float(group["trace"].mean()),
                       eigen_converged=bool(group["eigen_converged"].all()))
    return [rows[key] for key in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "jobs" / "fashion_mnist.toml")
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "fashion-mnist", help="the sweep folder")
    parser.add_argument("--reuse", action="store_true", help="read a finished sweep folder; run nothing")
    parser.add_argument("--within", type=float, default=1.0, help="points of IMP's accuracy that count as equal")
    parser.add_argument("--figures", type=Path, default=REPO / "bench" / "results" / "fashion_mnist",
                        help="where the report's PNG figures are copied")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fashion_mnist_sweep.json")
    args = parser.parse_args()
    if args.reuse:
        wall = args.sweep / WALL_FILE
        timing = json.loads(wall.read_text()) if wall.exists() else {"wall_seconds": None, "fresh": None}
    else:
        timing = run_sweep(args.spec, args.sweep)

    import torch

    from dpcluster.report.build import write_report
    from dpcluster.report.tables import load, summary

    data = load(args.sweep)
    table, written = write_report(args.sweep, args.sweep / "report", data)
    args.figures.mkdir(parents=True, exist_ok=True)
    for path in written:
        if path.suffix == ".png":
            shutil.copyfile(path, args.figures / path.name)
    report = {
        "machine": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "spec": args.spec.read_text(), "sweep_wall_seconds": timing["wall_seconds"],
        "fresh_run": timing["fresh"], "jobs": _job_counts(args.sweep),
        "accuracy_by_level": accuracy_table(table), "within_points": args.within,
        "time_to_mask": time_to_mask(data.levels, args.within), "analyses": analysis_table(data),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["time_to_mask"]:
        if row["equal_accuracy_sparsity"] is None:
            print(f"{row['distilled']} never within {args.within} points of {row['imp']}")
        else:
            print(f"{row['distilled']} vs {row['imp']}: equal up to {100 * row['equal_accuracy_sparsity']:.1f}%: "
                  f"search {row['search_speedup']:.1f}x faster, time-to-mask {row['time_to_mask_speedup']:.1f}x")
    print(f"sweep: {timing['wall_seconds'] or float('nan'):.0f} s; wrote {args.out} and {args.figures}")


def _job_counts(sweep: Path) -> dict:
    from dpcluster.sweeps.manifest import Manifest

    counts: dict = {}
    for job in Manifest.open(sweep / "manifest.json", read_only=True).jobs.values():
        counts[job.kind] = counts.get(job.kind, 0) + 1
    return counts


if __name__ == "__main__":
    main()
