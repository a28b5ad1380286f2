"""Distilled-set quality on digits: DM and MTT sets against real subsets of the same size.

For each seed, distils a set with each method (seeded, cached under --cache), trains fresh default ConvNets on
it (as distilled pruning's inner loop does: the spec's ``distilled_training`` with the set's augmentation and,
for MTT, its learned learning rate) and tests them on the real test split. Two real baselines are trained the
same way (the sets' augmentation, the spec's learning rate):

- ``dm_start``: the exact real images distribution matching started from (the indices its set records; MTT
  starts from the same images for the same seed), so ``dm - dm_start`` is what matching itself adds;
- ``random_subset``: an independent random real subset of the same size (drawn with seed 10000 + seed).

Every set is trained ``--eval-seeds`` times (network seeds 0..K-1) and its mean test accuracy is that seed's
figure. Writes JSON (default bench/results/distill_quality.json) with the machine and the thread count.

    OMP_NUM_THREADS=1 python bench/distill_quality.py    # 10 images per class, seeds 0,1,2, 3 networks each
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dpcluster.data import load_data
from dpcluster.data.augment import resolve_augmentation
from dpcluster.distilled.cache import cached_distill
from dpcluster.distilled.dm import initial_indices, initial_subset
from dpcluster.distilled.evaluate import random_real_subset, test_accuracy_after_training_on
from dpcluster.runtime import place_data, resolve_device
from dpcluster.specs import ExperimentSpec

RANDOM_SUBSET_SEED = 10_000


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="experiment spec (default: the built-in defaults)")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="dm,mtt")
    parser.add_argument("--eval-seeds", type=int, default=3, help="networks trained on each set (default 3)")
    parser.add_argument("--whole-set", action="store_true",
                        help="also the whole training set as a baseline, trained as the spec's real-data training "
                             "(its epochs; a distilled set's 100s of epochs over 60,000 images do not fit a CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=Path("runs/distilled"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "distill_quality.json")
    args = parser.parse_args()
    began = time.perf_counter()
    spec = ExperimentSpec.load(args.config) if args.config else ExperimentSpec()
    device = resolve_device(args.device)
    data = place_data(load_data(spec.data), device, spec.data.placement)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]

    def accuracy(tensors, augmentation: str, lr: float | None = None) -> float:
        training = spec.distilled_training.with_auto_augmentation(augmentation)
        return statistics.fmean(test_accuracy_after_training_on(tensors, data, spec.model, training, k, device, lr)
                                for k in range(args.eval_seeds))

    rows = []
    for seed in seeds:
        row: dict = {"seed": seed}
        augmentation = resolve_augmentation("auto", data)
        for method in methods:
            source = spec.distilled.replace(source=method, path=None, images_per_class=args.ipc, seed=seed)
            started = time.perf_counter()
            distilled, folder, cached = cached_distill(source, data, spec.model, args.cache, device)
            seconds = time.perf_counter() - started
            augmentation = distilled.training_augmentation(data)
            lr = distilled.learned_lr if source.use_learned_lr else None
            row[method] = accuracy(distilled.as_tensor_set(), augmentation, lr)
            row[f"{method}_learned_lr"] = distilled.learned_lr
            row[f"{method}_seconds"] = None if cached else seconds
            print(f"seed {seed} {method}: {100 * row[method]:.1f}% ({folder.name})", flush=True)
            if method == "dm":
                start = initial_subset(data, distilled)
                # The recorded start is the one the seed reproduces (and the one MTT starts from too).
                assert distilled.extra["initial_indices"] == initial_indices(data, args.ipc, seed).tolist()
                row["dm_start"] = accuracy(start, augmentation)
                row["dm_moved"] = float((distilled.images - start.x).abs().mean())
                print(f"seed {seed} the real images DM started from: {100 * row['dm_start']:.1f}%", flush=True)
        subset = random_real_subset(data, args.ipc, RANDOM_SUBSET_SEED + seed)
        row["random_subset"] = accuracy(subset, augmentation)
        print(f"seed {seed} random subset: {100 * row['random_subset']:.1f}%", flush=True)
        rows.append(row)
    if args.whole_set:
        from dpcluster.models import build_model
        from dpcluster.training import evaluate, train

        whole = []
        for k in range(args.eval_seeds):
            torch.manual_seed(k)
            model = build_model(spec.model, data.input_shape, data.num_classes)
            train(model, data.train, spec.training, device=device, seed=k)
            whole.append(evaluate(model, data.test, device=device)[0])
        for row in rows:
            row["whole_set"] = statistics.fmean(whole)
        print(f"whole training set ({spec.training.epochs} epochs): {100 * statistics.fmean(whole):.1f}%", flush=True)
    names = ["random_subset", *(["whole_set"] if args.whole_set else []), *(["dm_start"] if "dm" in methods else []),
             *methods]
    summary = {name: {"mean": statistics.fmean(r[name] for r in rows),
                      "std": statistics.pstdev([r[name] for r in rows])} for name in names}
    if "dm" in methods:
        gains = [r["dm"] - r["dm_start"] for r in rows]
        summary["dm_minus_dm_start"] = {"mean": statistics.fmean(gains), "std": statistics.pstdev(gains)}
    report = {
        "data": spec.data.name, "model": spec.model.to_dict(), "images_per_class": args.ipc,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "eval_seeds": args.eval_seeds, "random_subset_seed": f"{RANDOM_SUBSET_SEED} + seed",
        "distilled": {"dm": spec.distilled.dm.to_dict(), "mtt": spec.distilled.mtt.to_dict()},
        "distilled_training": spec.distilled_training.to_dict(), "seeds": rows, "summary": summary,
        **({"whole_set_training": spec.training.to_dict()} if args.whole_set else {}),
        "wall_seconds": time.perf_counter() - began,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, s in summary.items():
        print(f"{name}: {100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
