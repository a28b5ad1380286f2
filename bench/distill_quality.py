"""Distilled-set quality on digits: DM and MTT sets against random real subsets of the same size.

For each seed, distils a set with each method (seeded, cached under --cache), trains a fresh default ConvNet on
it (as distilled pruning's inner loop does: the set's augmentation and learned learning rate) and tests it on
the real test split; the baseline is a random real subset of the same size trained the same way. Writes JSON
(default bench/results/distill_quality.json).

    python bench/distill_quality.py                    # 10 images per class, seeds 0,1,2
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
from dpcluster.distilled.cache import cached_distill
from dpcluster.distilled.evaluate import random_real_subset, test_accuracy_after_training_on
from dpcluster.runtime import place_data, resolve_device
from dpcluster.specs import ExperimentSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="experiment spec (default: the built-in defaults)")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="dm,mtt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=Path("runs/distilled"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "distill_quality.json")
    args = parser.parse_args()
    spec = ExperimentSpec.load(args.config) if args.config else ExperimentSpec()
    device = resolve_device(args.device)
    data = place_data(load_data(spec.data), device, spec.data.placement)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        augmentation = None
        for method in args.methods.split(","):
            source = spec.distilled.replace(source=method, path=None, images_per_class=args.ipc, seed=seed)
            started = time.perf_counter()
            distilled, folder, cached = cached_distill(source, data, spec.model, args.cache, device)
            seconds = time.perf_counter() - started
            augmentation = distilled.training_augmentation(data)
            training = spec.distilled_training.replace(augmentation=augmentation)
            lr = distilled.learned_lr if source.use_learned_lr else None
            row[method] = test_accuracy_after_training_on(distilled.as_tensor_set(), data, spec.model, training,
                                                          seed, device, lr)
            row[f"{method}_learned_lr"] = distilled.learned_lr
            row[f"{method}_seconds"] = None if cached else seconds
            print(f"seed {seed} {method}: {100 * row[method]:.1f}% ({folder.name})", flush=True)
        # The baseline trains like the sets: same epochs and augmentation, the spec's learning rate.
        training = spec.distilled_training.replace(augmentation=augmentation or "none")
        row["random_subset"] = test_accuracy_after_training_on(random_real_subset(data, args.ipc, seed), data,
                                                               spec.model, training, seed, device)
        print(f"seed {seed} random subset: {100 * row['random_subset']:.1f}%", flush=True)
        rows.append(row)
    summary = {name: {"mean": statistics.fmean(r[name] for r in rows),
                      "std": statistics.pstdev([r[name] for r in rows])}
               for name in ["random_subset", *args.methods.split(",")]}
    report = {"data": spec.data.name, "model": spec.model.to_dict(), "images_per_class": args.ipc,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "distilled_training": spec.distilled_training.to_dict(), "seeds": rows, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for name, s in summary.items():
        print(f"{name}: {100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
