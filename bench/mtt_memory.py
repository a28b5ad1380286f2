"""Peak memory of trajectory matching's unrolled student, by synthetic images per student step (mtt.batch_syn).

The student's graph holds every step's activations and parameter updates until the matching loss is
back-propagated, so memory grows with syn_steps × batch_syn. Each configuration runs a couple of MTT
iterations in a fresh process on CIFAR-10-shaped data (random pixels: memory does not depend on them) with
random expert trajectories, and reports the peak: CUDA's max_memory_allocated on a GPU, the process's peak
resident set size on a CPU. Writes JSON (default bench/results/mtt_memory-<device>.json).

    python bench/mtt_memory.py --device cpu --ipc 10 --syn-steps 10
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch


def one(args: argparse.Namespace) -> dict:
    from dpcluster.data.base import DataBundle, TensorSet
    from dpcluster.distilled.experts import expert_network, flat_parameters
    from dpcluster.distilled.mtt import distill_mtt
    from dpcluster.runtime import resolve_device
    from dpcluster.specs import ModelSpec
    from dpcluster.specs.experiment import MTTSpec

    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    n = 10 * max(args.ipc, 20)
    train = TensorSet(torch.randn(n, 3, 32, 32, generator=generator), torch.arange(10).repeat(n // 10))
    data = DataBundle(name="cifar10", num_classes=10, input_shape=(3, 32, 32), mean=(0.0,) * 3, std=(1.0,) * 3,
                      class_names=tuple(str(i) for i in range(10)), train=train, test=train)
    model_spec = ModelSpec(width=args.width)
    params = flat_parameters(expert_network(model_spec, data, 0, 0, "cpu"))
    trajectory = params + 0.01 * torch.randn(4, params.numel(), generator=generator).cumsum(0)
    trajectory = torch.cat([params[None], trajectory])
    mtt = MTTSpec(iterations=args.iterations, syn_steps=args.syn_steps, expert_epochs=2, max_start_epoch=2,
                  trajectory_epochs=4, batch_syn=int(args.batch_syn) or None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    distill_mtt(data, model_spec, args.ipc, mtt, "dsa", 0, device, [trajectory])
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"batch_syn": int(args.batch_syn) or 10 * args.ipc, "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--syn-steps", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch-syn", default="0,50,20,10", help="comma-separated; 0 = the whole set")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    from dpcluster.runtime import resolve_device

    device = resolve_device(args.device)
    rows = []
    for batch in [int(b) for b in args.batch_syn.split(",")]:
        command = [sys.executable, __file__, "--one", "--device", args.device, "--ipc", str(args.ipc),
                   "--width", str(args.width), "--syn-steps", str(args.syn_steps), "--iterations",
                   str(args.iterations), "--batch-syn", str(batch)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"batch_syn {row['batch_syn']:>4}: peak {row['peak_bytes'] / 2**20:,.0f} MiB", flush=True)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak resident set size",
              "model": f"convnet depth 3 width {args.width}", "input": [3, 32, 32], "images_per_class": args.ipc,
              "syn_steps": args.syn_steps, "rows": rows}
    out = args.out or Path(__file__).parent / "results" / f"mtt_memory-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
