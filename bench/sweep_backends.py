"""Wall time of one sweep on each backend, with default options, one after the other on this machine.

Runs ``dpcluster sweep SPEC --backend B --out TMP`` (with ``--wait`` on Slurm) for local, Slurm (the cluster ``slurm/cluster.sh up``
starts) and Ray (a local Ray started by the command), each into a fresh folder, and writes JSON (default
bench/results/sweep_backends.json). Every job of every backend must finish, or the script fails.

    python bench/sweep_backends.py                        # jobs/digits_small.toml, all three backends
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dpcluster.sweeps.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "jobs" / "digits_small.toml")
    parser.add_argument("--backends", default="local,slurm,ray")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sweep_backends.json")
    args = parser.parse_args()
    dpcluster = Path(sys.executable).with_name("dpcluster")
    rows = []
    for backend in args.backends.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"sweep-{backend}-"))
        started = time.perf_counter()
        # On Slurm the command returns once Slurm holds the jobs; --wait follows them to the end.
        follow = ["--wait"] if backend == "slurm" else []
        done = subprocess.run([str(dpcluster), "sweep", str(args.spec), "--backend", backend, "--out", str(folder),
                               *follow], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{backend}: dpcluster sweep failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        states = [job.state for job in Manifest.open(folder / "manifest.json", read_only=True).jobs.values()]
        if any(state != "done" for state in states):
            sys.exit(f"{backend}: not every job finished: {states}")
        rows.append({"backend": backend, "seconds": round(seconds, 1), "jobs": len(states)})
        print(f"{backend}: {seconds:.1f} s for {len(states)} jobs", flush=True)
    local = next((r["seconds"] for r in rows if r["backend"] == "local"), None)
    for row in rows:
        row["vs_local"] = round(row["seconds"] / local, 2) if local else None
    report = {"spec": str(args.spec.relative_to(REPO)) if args.spec.is_relative_to(REPO) else str(args.spec),
              "cpus": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor() or "cpu",
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
