"""``dpcluster sweep``, ``status`` and ``aggregate``: a sweep's jobs, their states, and its results."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dpcluster.errors import UserError


def add_parsers(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sweep", help="run a sweep spec's jobs (distill, mask search, validation, aggregate)",
                            description="Expand a sweep spec into jobs and run them. Running the same command "
                                        "again resumes: finished jobs are skipped, failed ones retried.")
    p.add_argument("spec", type=Path, help="sweep spec (TOML), e.g. jobs/digits_small.toml")
    p.add_argument("--backend", choices=("local",), default="local", help="where jobs run (default local)")
    p.add_argument("--out", type=Path, help="sweep folder (default sweeps/<name>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.set_defaults(handler=handle_sweep)
    s = commands.add_parser("status", help="show a sweep's jobs by stage and state")
    s.add_argument("dir", type=Path, help="sweep folder")
    s.set_defaults(handler=handle_status)
    a = commands.add_parser("aggregate", help="mean, std and count of accuracy per data set, model, method, sparsity")
    a.add_argument("dir", type=Path, help="sweep folder")
    a.set_defaults(handler=handle_aggregate)


def handle_sweep(args: argparse.Namespace) -> int:
    from dpcluster.runtime import resolve_device
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.coordinator import run_sweep
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.spec import SweepSpec

    console = Console()
    sweep = SweepSpec.load(args.spec)
    expand(sweep)  # every spec mistake surfaces here, before the folder is made
    resolve_device(args.device)
    out = args.out or Path("sweeps") / sweep.name
    backend = LocalBackend(on_start=lambda job: console.print(f"  {job.name}"))
    manifest = run_sweep(sweep, out, backend, args.device, console.print)
    console.print(status_table(manifest))
    failed = [s for s in manifest.jobs.values() if s.state != "done"]
    if failed:
        console.print(f"{len(failed)} job(s) not done; run the same command again to retry")
        return 1
    console.print(f"Results: {out}/results (hive-partitioned Parquet), summary: {out}/aggregate.parquet")
    return 0


def status_table(manifest) -> Table:
    counts = Counter((state.kind, state.state) for state in manifest.jobs.values())
    table = Table(title="Jobs by stage and state")
    states = ("pending", "running", "done", "failed")
    table.add_column("stage")
    for state in states:
        table.add_column(state, justify="right")
    for kind in ("distill", "mask", "validate", "aggregate"):
        if any(k == kind for k, _ in counts):
            table.add_row(kind, *[str(counts.get((kind, state), 0)) for state in states])
    return table


def handle_status(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.coordinator import MANIFEST_FILE
    from dpcluster.sweeps.manifest import Manifest

    path = args.dir / MANIFEST_FILE
    if not path.exists():
        raise UserError(f"{args.dir}: not a sweep folder (no {MANIFEST_FILE})")
    manifest = Manifest.open(path)
    console = Console()
    console.print(status_table(manifest))
    for state in manifest.jobs.values():
        if state.state == "failed":
            console.print(f"failed ({state.attempts} attempts): {state.name}: {state.error}")
    return 0


def handle_aggregate(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.aggregate import AGGREGATE_FILE, aggregate

    summary = aggregate(args.dir)
    table = Table(title="Test accuracy (%) by data set, model, method and sparsity")
    for name in ("dataset", "model", "method", "ipc", "sparsity", "mean", "std", "count"):
        table.add_column(name, justify="right" if name not in ("dataset", "model", "method") else "left")
    for row in summary.to_pylist():
        table.add_row(row["dataset"], row["model"], row["method"], str(row["images_per_class"] or ""),
                      f"{100 * row['sparsity']:.1f}%", f"{100 * row['test_accuracy_mean']:.1f}",
                      f"{100 * (row['test_accuracy_stddev'] or 0):.1f}", str(row["test_accuracy_count"]))
    console = Console()
    console.print(table)
    console.print(f"wrote {args.dir / AGGREGATE_FILE}")
    return 0
