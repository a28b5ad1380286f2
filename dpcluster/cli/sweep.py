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
    p.add_argument("--backend", choices=("local", "slurm", "ray"), default="local",
                   help="where jobs run: this process, Slurm through submitit, or Ray (default local)")
    p.add_argument("--out", type=Path, help="sweep folder (default sweeps/<name>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    slurm = p.add_argument_group("slurm")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--constraint")
    slurm.add_argument("--cpus-per-job", type=float, default=1, help="CPUs per job (Slurm, Ray; default 1)")
    slurm.add_argument("--gpus-per-job", type=float, default=0,
                       help="GPUs per job (Slurm: whole GPUs; Ray: fractions share a GPU; default 0)")
    slurm.add_argument("--mem-gb", type=float, help="memory per job (Slurm)")
    slurm.add_argument("--time-min", type=int, default=60, help="time limit per job in minutes (Slurm; default 60)")
    slurm.add_argument("--array-parallelism", type=int, default=64, help="array tasks at once (Slurm; default 64)")
    slurm.add_argument("--tasks-per-job", type=int,
                       help="processes per job; validations train data-parallel across them (Slurm; default: "
                            "one per GPU)")
    ray = p.add_argument_group("ray")
    ray.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    p.set_defaults(handler=handle_sweep)
    s = commands.add_parser("status", help="show a sweep's jobs by stage and state, with Slurm's view of each")
    s.add_argument("dir", type=Path, help="sweep folder")
    s.set_defaults(handler=handle_status)
    c = commands.add_parser("cancel", help="cancel a sweep's queued and running Slurm jobs")
    c.add_argument("dir", type=Path, help="sweep folder")
    c.set_defaults(handler=handle_cancel)
    a = commands.add_parser("aggregate", help="mean, std and count of accuracy per data set, model, method, sparsity")
    a.add_argument("dir", type=Path, help="sweep folder")
    a.set_defaults(handler=handle_aggregate)


def handle_sweep(args: argparse.Namespace) -> int:
    from dpcluster.runtime import resolve_device
    from dpcluster.sweeps.coordinator import run_sweep, unfinished
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.preflight import preflight
    from dpcluster.sweeps.spec import SweepSpec

    console = Console()
    sweep = SweepSpec.load(args.spec)
    expand(sweep)  # every spec mistake surfaces here, before the folder is made
    if args.backend == "local":
        # Elsewhere the device, the data and the set files are those of the job's machine, checked there.
        resolve_device(args.device)
        preflight(sweep, console.print)
    out = args.out or Path("sweeps") / sweep.name
    backend = make_backend(args, out, console)
    manifest = run_sweep(sweep, out, backend, args.device, console.print)
    console.print(status_table(manifest))
    not_done = unfinished(sweep, out)
    if not_done:
        console.print(f"{len(not_done)} job(s) not done; run the same command again to retry")
        return 1
    console.print(f"Results: {out}/results (hive-partitioned Parquet), summary: {out}/aggregate.parquet")
    return 0


def make_backend(args: argparse.Namespace, out: Path, console: Console):
    from dpcluster.sweeps.backends import LocalBackend

    if args.backend == "local":
        return LocalBackend(on_start=lambda job: console.print(f"  {job.name}"))
    if args.backend == "slurm":
        from dpcluster.sweeps.slurm_backend import SlurmBackend

        if args.gpus_per_job != int(args.gpus_per_job) or args.cpus_per_job != int(args.cpus_per_job):
            raise UserError("--gpus-per-job and --cpus-per-job must be whole numbers on Slurm")
        return SlurmBackend(out / "logs", args.partition, args.account, args.qos, args.constraint,
                            int(args.gpus_per_job), int(args.cpus_per_job), args.mem_gb, args.time_min,
                            args.array_parallelism, args.tasks_per_job)
    from dpcluster.sweeps.ray_backend import RayBackend

    return RayBackend(args.address, args.gpus_per_job, args.cpus_per_job)


def status_table(manifest) -> Table:
    from dpcluster.sweeps.jobs import kind_names

    counts = Counter((state.kind, state.state) for state in manifest.jobs.values())
    table = Table(title="Jobs by stage and state")
    from dpcluster.sweeps.manifest import STATES as states

    table.add_column("stage")
    for state in states:
        table.add_column(state, justify="right")
    for kind in kind_names():
        if any(k == kind for k, _ in counts):
            table.add_row(kind, *[str(counts.get((kind, state), 0)) for state in states])
    return table


def _manifest(folder: Path):
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.manifest import Manifest

    path = SweepLayout(folder).manifest_file
    if not path.exists():
        raise UserError(f"{folder}: not a sweep folder (no {path.name})")
    return Manifest.open(path)


def handle_status(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.scheduler_state import slurm_states

    manifest = _manifest(args.dir)
    console = Console()
    console.print(status_table(manifest))
    followed = {job_id: s for job_id, s in manifest.jobs.items() if s.scheduler_id}
    slurm = slurm_states([s.scheduler_id for s in followed.values()])
    if slurm:
        table = Table(title="Slurm's view of the jobs not done")
        for name in ("job", "Slurm id", "Slurm state", "elapsed"):
            table.add_column(name)
        counts = Counter(slurm[s.scheduler_id].state for s in followed.values() if s.scheduler_id in slurm)
        for state in followed.values():
            known = slurm.get(state.scheduler_id)
            if known is not None and state.state != "done":
                table.add_row(state.name, state.scheduler_id, known.state, known.elapsed)
        console.print(table)
        console.print("Slurm states: " + ", ".join(f"{state} {count}" for state, count in sorted(counts.items())))
    for state in manifest.jobs.values():
        if state.state == "failed":
            console.print(f"failed ({state.attempts} attempts): {state.name}: {state.error}")
    return 0


def handle_cancel(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.scheduler_state import cancel_slurm

    from dpcluster.sweeps.layout import SweepLayout

    manifest = _manifest(args.dir)
    # First the marker, so a coordinator still running submits nothing more; then Slurm's jobs.
    SweepLayout(args.dir).cancel_file.touch()
    running = {job_id: s for job_id, s in manifest.jobs.items() if s.state == "running" and s.scheduler_id}
    cancel_slurm([s.scheduler_id for s in running.values()])
    for job_id in running:
        manifest.jobs[job_id].state, manifest.jobs[job_id].error = "cancelled", "cancelled by dpcluster cancel"
    manifest.save()
    Console().print(f"cancelled {len(running)} job(s) in {len({s.scheduler_id for s in running.values()})} "
                    f"Slurm job(s); run the sweep again to start them anew")
    return 0


def handle_aggregate(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.aggregate import aggregate
    from dpcluster.sweeps.coordinator import current_job_ids
    from dpcluster.sweeps.layout import SweepLayout

    layout = SweepLayout(args.dir)
    summary = aggregate(args.dir, current_job_ids(args.dir))
    table = Table(title="Test accuracy (%) by data set, model, method and sparsity")
    for name in ("dataset", "model", "method", "ipc", "sparsity", "mean", "std", "count"):
        table.add_column(name, justify="right" if name not in ("dataset", "model", "method") else "left")
    for row in summary.to_pylist():
        table.add_row(row["dataset"], row["model"], row["method"], str(row["images_per_class"] or ""),
                      f"{100 * row['sparsity']:.1f}%", f"{100 * row['test_accuracy_mean']:.1f}",
                      f"{100 * (row['test_accuracy_stddev'] or 0):.1f}", str(row["test_accuracy_count"]))
    console = Console()
    console.print(table)
    console.print(f"wrote {layout.aggregate_file}")
    return 0
