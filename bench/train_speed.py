"""Training speed: dpcluster's loop against a reference loop written the way the papers' code trains.

The reference loop is a DataLoader over a TensorDataset, fp32, contiguous tensors, a plain (non-fused,
non-foreach) optimizer and a per-batch Python loop that masks weights by hand; dpcluster's loop keeps the
data on the device, uses bf16 autocast, channels_last and fused optimizers on CUDA. Both train the same
ConvNet on the same tensors in the same process. Writes JSON (default bench/results/train_speed-<device>.json).

    python bench/train_speed.py                        # CIFAR-10-shaped data, ConvNet-128, on the GPU if any
    python bench/train_speed.py --device cpu --train-size 5000 --distilled-epochs 20   # a quick CPU figure
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dpcluster.data.base import TensorSet
from dpcluster.models import build_model
from dpcluster.pruning.masks import full_mask, magnitude_scores, next_mask
from dpcluster.pruning.model_masks import apply_mask, prunable_weights
from dpcluster.runtime import resolve_device
from dpcluster.specs import ModelSpec, TrainingSpec
from dpcluster.training import train


def reference_train(model, x, y, spec: TrainingSpec, mask, device) -> None:
    """How the papers' code trains: DataLoader over CPU tensors, fp32, one Python step per batch."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay, foreach=False)
    params = dict(model.named_parameters())
    loader = DataLoader(TensorDataset(x, y), batch_size=spec.batch_size, shuffle=True)
    for _ in range(spec.epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for name, m in mask.items():
                    params[name].mul_(m.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, x: torch.Tensor, y: torch.Tensor, spec: TrainingSpec, model_spec: ModelSpec,
            device: torch.device, repeats: int) -> dict:
    num_classes = int(y.max()) + 1
    shape = tuple(x.shape[1:])

    def fresh():
        torch.manual_seed(0)
        model = build_model(model_spec, shape, num_classes)
        weights = prunable_weights(model)
        mask = next_mask(magnitude_scores(weights), full_mask(weights), 0.2, 3)  # a 49%-sparse subnetwork
        apply_mask(model, mask)
        return model, mask

    on_device = TensorSet(x, y).to(device)
    ours, reference = [], []
    for _ in range(repeats + 1):  # the first pair warms up kernels and caches and is not counted
        model, mask = fresh()
        ours.append(timed(lambda: train(model, on_device, spec, device=device, seed=0, mask=mask)))
        model, mask = fresh()
        reference.append(timed(lambda: reference_train(model, x, y, spec, mask, device)))
    ours, reference = min(ours[1:]), min(reference[1:])
    return {"what": name, "examples": len(y), "epochs": spec.epochs, "batch_size": spec.batch_size,
            "dpcluster_seconds": ours, "reference_seconds": reference, "speedup": reference / ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=50_000, help="real examples (CIFAR-10 has 50,000)")
    parser.add_argument("--images-per-class", type=int, default=10)
    parser.add_argument("--distilled-epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    # Random CIFAR-10-shaped tensors: speed does not depend on what the pixels show.
    real_x = torch.randn(args.train_size, 3, 32, 32, generator=generator)
    real_y = torch.randint(0, 10, (args.train_size,), generator=generator)
    syn_x = torch.randn(10 * args.images_per_class, 3, 32, 32, generator=generator)
    syn_y = torch.arange(10).repeat_interleave(args.images_per_class)
    model_spec = ModelSpec(width=args.width)
    results = [
        compare("distilled training session", syn_x, syn_y,
                TrainingSpec(epochs=args.distilled_epochs, batch_size=256, lr=0.01), model_spec, device, args.repeats),
        compare("one real-data epoch", real_x, real_y, TrainingSpec(epochs=1, batch_size=256), model_spec, device,
                args.repeats),
    ]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "model": f"convnet depth 3 width {args.width}, 49% sparse", "results": results,
    }
    out = args.out or Path(__file__).parent / "results" / f"train_speed-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for r in results:
        print(f"{r['what']}: dpcluster {r['dpcluster_seconds']:.3f}s, reference {r['reference_seconds']:.3f}s, "
              f"speedup x{r['speedup']:.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
