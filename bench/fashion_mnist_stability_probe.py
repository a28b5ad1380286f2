"""Which Fashion-MNIST settings make the dense network unstable at initialisation: for each setting (ConvNet width,
normalisation, learning rate), ``dpcluster run --methods dense --analyses stability`` on one seed, and the error
barrier of the two copies (the rise of test error on the straight path between them above the mean of its ends;
Frankle et al. call a network stable when it is under 2%). Writes JSON (default
bench/results/fashion_mnist_stability_probe.json) with the machine, each setting's barrier, curve, accuracy and
wall time. Runs go to ``--folder`` (a finished one is read, not run again, and the JSON says so).

    python bench/fashion_mnist_stability_probe.py        # ~6 min on 2 cores; needs dataset-fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.distill_quality import cpu_name  # noqa: E402

# (width, norm, lr): the shipped sweep's network at a higher lr, batch norm, a wider one at a higher lr still,
# and no normalisation at all.
SETTINGS = [(16, "instancenorm", 0.1), (16, "batchnorm", 0.1), (32, "batchnorm", 0.2), (16, "none", 0.1),
            (32, "instancenorm", 0.2)]

SPEC = """[data]
name = "fashion_mnist"
root = "{root}"
[model]
width = {width}
depth = 3
norm = "{norm}"
[training]
epochs = 2
batch_size = 128
lr = {lr}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REPO / "runs" / "fashion-mnist-stability-probe")
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fashion_mnist_stability_probe.json")
    args = parser.parse_args()
    from dpcluster.results.analyses import read_analysis
    from dpcluster.results.levels import read_levels

    rows = []
    for width, norm, lr in SETTINGS:
        name = f"w{width}-{norm}-lr{lr}"
        run = args.folder / name
        fresh = not (run / "results").exists()
        config = args.folder / f"{name}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(SPEC.format(root=args.root, width=width, norm=norm, lr=lr))
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dpcluster", "run", "--config", str(config), "--methods", "dense",
                        "--seeds", str(args.seed), "--analyses", "stability", "--out", str(run), "--device", "cpu"],
                       check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - began
        curve = read_analysis(run / "analyses" / "stability", "stability").to_pandas().sort_values("alpha")
        accuracy = float(read_levels(run / "results").to_pandas()["test_accuracy"].mean())
        rows.append({"width": width, "norm": norm, "lr": lr, "test_accuracy": accuracy,
                     "error_barrier": float(curve["instability"].iloc[0]),
                     "alpha": [float(a) for a in curve["alpha"]],
                     "test_error": [float(e) for e in curve["test_error"]],
                     "wall_seconds": seconds if fresh else None, "ran_here": fresh})
        print(f"{name}: accuracy {100 * accuracy:.1f}%, error barrier {100 * rows[-1]['error_barrier']:.2f} points",
              flush=True)
    import torch

    report = {"machine": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "seed": args.seed, "epochs": 2, "batch_size": 128, "depth": 3, "settings": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
