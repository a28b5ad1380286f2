"""The shipped digits search, and its best configuration against the default on the same seeds.

1. Runs ``dpcluster tune jobs/tune_digits_distilled.toml`` (a local Ray, every core) and times it.
2. Runs the default experiment and the search's best configuration on seeds the search did not use (its trials
   all ran seed 0), each seed once per configuration, through the search's own objectives but tested on the test
   split (the search scored its trials on a validation split held out of the training data):
   - ``distilled_accuracy``: the unpruned network after one distilled training session (what the search scored);
   - ``pruned_accuracy``: the experiment itself, distilled pruning for the default's 20 rounds, every round's
     subnetwork trained on real data and tested; kept at a few sparsities, with the seconds spent on the search
     for its mask.

Writes JSON (default bench/results/tune_digits.json).

    python bench/tune_digits.py                 # seeds 1-5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Rounds whose subnetworks are reported: sparsities 59%, 83%, 91%, 97% and 98.8% at 20% a round.
ROUNDS = (4, 8, 11, 16, 20)


def _evaluate(objective_name: str, spec, search, context) -> list[dict]:
    from dpcluster.tune.objectives import get_objective

    reports: list[dict] = []
    get_objective(objective_name).run(spec, search, context, reports.append)
    return reports


def _summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1
            else 0.0, "values": [round(v, 4) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "jobs" / "tune_digits_distilled.toml")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tune_digits.json")
    args = parser.parse_args()

    import torch

    from dpcluster.specs import ExperimentSpec
    from dpcluster.sweeps.context import JobContext
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.tune.spec import SearchSpec, value_at

    folder = Path(tempfile.mkdtemp(prefix="tune-digits-"))
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("dpcluster")), "tune", str(args.spec), "--out",
                           str(folder), "--device", "cpu"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    search_seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the search failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(done.stdout)

    # The search scored its trials on a validation split held out of the training data; the comparison is on
    # the test split, which no trial saw.
    search = dataclasses.replace(SearchSpec.load(args.spec), validation=0)
    best = ExperimentSpec.load(folder / "best.toml")
    searched = {d.key: value_at(best, d.key) for d in search.space}
    default = search.base
    # The search folder's distilled set (distilled once for the search) serves both configurations.
    context = JobContext(SweepLayout(folder), torch.device("cpu"))
    seeds = [int(s) for s in args.seeds.split(",")]
    configurations = {"default": default, "best": best}
    results: dict = {}
    for name, spec in configurations.items():
        unpruned, by_round, mask_seconds, sparsity = [], {r: [] for r in ROUNDS}, {r: [] for r in ROUNDS}, {}
        for seed in seeds:
            seeded = spec.replace(seed=seed)
            unpruned.append(_evaluate("distilled_accuracy", seeded, search, context)[-1]["accuracy"])
            for report in _evaluate("pruned_accuracy", seeded, search, context):
                if report["round"] in by_round:
                    by_round[report["round"]].append(report["accuracy"])
                    mask_seconds[report["round"]].append(report["mask_search_seconds"])
                    sparsity[report["round"]] = report["sparsity"]
            print(f"{name} seed {seed}: unpruned {unpruned[-1]:.4f}, "
                  + ", ".join(f"round {r} {v[-1]:.4f}" for r, v in by_round.items()), flush=True)
        results[name] = {
            "distilled_training": {"lr": spec.distilled_training.lr, "epochs": spec.distilled_training.epochs},
            "unpruned_accuracy": _summary(unpruned),
            "pruned": [{"round": r, "sparsity": round(sparsity[r], 4), "test_accuracy": _summary(by_round[r]),
                        "mask_search_seconds": _summary(mask_seconds[r])} for r in ROUNDS],
        }
    report = {
        "spec": str(args.spec.relative_to(REPO)) if args.spec.is_relative_to(REPO) else str(args.spec),
        "cpus": os.cpu_count(), "machine": platform.machine(), "processor": "cpu",
        "search_seconds": round(search_seconds, 1), "trials": search.trials, "best_settings": searched,
        "seeds": seeds, **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
