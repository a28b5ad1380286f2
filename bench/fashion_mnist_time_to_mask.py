"""Time-to-mask on Fashion-MNIST, the papers' way: IMP against distilled pruning, the same network, seeds and
rounds, each level validated on the real data.

Runs ``dpcluster run`` (the local sweep of a run) with ``--config`` (default: a width-16 ConvNet, 2 real epochs,
10 rounds to 89%; DM's 10-per-class set) and reads the results data set: test accuracy by level and method (mean
over seeds), and at the sparsest level where distilled pruning is within ``--within`` points of IMP, both
methods' mask search (every inner loop up to that mask) and the papers' time-to-mask (the search plus the final
real-data training), in seconds and training examples, with the ratio IMP / distilled. Writes JSON (default
bench/results/fashion_mnist_time_to_mask.json) with the machine, the thread count and the wall time.

    python bench/fashion_mnist_time_to_mask.py --seeds 0,1       # needs apt-get install dataset-fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.distill_quality import cpu_name  # noqa: E402
from dpcluster.results.levels import level_records, read_levels  # noqa: E402

DEFAULT_CONFIG = """
[data]
name = "fashion_mnist"
root = "/usr/share/datasets/fashion-mnist"
[model]
width = 16
depth = 3
[training]
epochs = 2
batch_size = 128
lr = 0.05
[pruning]
rounds = 10
"""


def mean(values) -> float:
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="experiment spec (default: the one above)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--within", type=float, default=1.0, help="points of IMP's accuracy that count as equal")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fashion_mnist_time_to_mask.json")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        config = args.config or Path(folder) / "spec.toml"
        if args.config is None:
            config.write_text(DEFAULT_CONFIG)
        out = Path(folder) / "run"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "dpcluster", "run", "--config", str(config), "--methods",
                        "imp,distilled", "--seeds", args.seeds, "--out", str(out), "--device", "cpu"],
                       check=True, env=env, cwd=folder)
        records = level_records(read_levels(out / "results"))
        spec_text = config.read_text()
    by_level: dict[tuple[int, str], list] = defaultdict(list)
    for r in records:
        by_level[(r.round, r.method)].append(r)
    rounds = sorted({r.round for r in records})
    table = [{"round": k, "sparsity": by_level[(k, "imp")][0].sparsity,
              **{method: mean(r.test_accuracy for r in by_level[(k, method)]) for method in ("imp", "distilled")}}
             for k in rounds]
    equal = [row for row in table if row["distilled"] >= row["imp"] - args.within / 100]
    at = equal[-1]["round"] if equal else None

    def costs(method: str) -> dict:
        rows = by_level[(at, method)]
        return {"search_seconds": mean(r.mask_search_seconds for r in rows),
                "search_examples": mean(r.mask_search_examples for r in rows),
                "time_to_mask_seconds": mean(r.time_to_mask_seconds for r in rows),
                "time_to_mask_examples": mean(r.time_to_mask_examples for r in rows)}

    import torch

    report = {
        "machine": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "seeds": args.seeds, "spec": spec_text, "accuracy_by_level": table, "within_points": args.within,
        "equal_accuracy_round": at,
        "equal_accuracy_sparsity": next((row["sparsity"] for row in table if row["round"] == at), None),
        "wall_seconds": time.perf_counter() - began,
    }
    if at is not None:
        imp, distilled = costs("imp"), costs("distilled")
        report.update(imp=imp, distilled=distilled,
                      search_speedup=imp["search_seconds"] / distilled["search_seconds"],
                      time_to_mask_speedup=imp["time_to_mask_seconds"] / distilled["time_to_mask_seconds"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in table:
        print(f"{100 * row['sparsity']:5.1f}%  imp {100 * row['imp']:.1f}  distilled {100 * row['distilled']:.1f}")
    if at is not None:
        print(f"equal accuracy up to round {at}: search {report['search_speedup']:.1f}x faster, time-to-mask "
              f"{report['time_to_mask_speedup']:.1f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
