"""``dpcluster sweep``, ``status`` and ``aggregate``: a sweep's jobs, their states, and its results."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dpcluster.cli.names import described
from dpcluster.cli.options import add_set_option, add_track_option, save_tracks, tracks_of, writable_folder
from dpcluster.cli.slurm_options import add_site_options
from dpcluster.cli.unfinished import add_retry_failed, not_done_lines, out_of_attempts
from dpcluster.errors import UserError
from dpcluster.sweeps.backend_registry import BackendEntry, backend_names, get_backend
from dpcluster.sweeps.layout import SweepLayout

# Rows of the status table of jobs not done (a sweep of thousands would scroll for pages); the counts cover all.
STATUS_ROWS = 40
DEFAULT_BACKEND = "local"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sweep", help="run a sweep spec's jobs (distill, mask search, validation, aggregate)",
                            description="Expand a sweep spec into jobs and run them. Running the same command "
                                        "again resumes: finished jobs are skipped, failed ones retried.")
    p.add_argument("spec", type=Path, help="sweep spec (TOML), e.g. jobs/digits_small.toml")
    add_set_option(p, "the sweep (seeds=[0,1], data.cifar10.root=..., grid.\"training.lr\"=[...]) or, for a key "
                      "that is not the sweep's, of its base experiment (training.lr=0.02)")
    p.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                   help=f"where jobs run (default {DEFAULT_BACKEND}); {described(get_backend, backend_names())}")
    p.add_argument("--out", type=Path, help="sweep folder (default sweeps/<name>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_retry_failed(p)
    add_track_option(p)
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be submitted (for Slurm, each sbatch script and its dependencies) and "
                        "submit and write nothing")
    slurm = p.add_argument_group("slurm")
    add_site_options(slurm, "each job")
    slurm.add_argument("--cpus-per-job", type=float, default=1, help="CPUs per job (Slurm, Ray; default 1)")
    slurm.add_argument("--gpus-per-job", type=float, default=0,
                       help="GPUs per job (Slurm: whole GPUs; Ray: fractions share a GPU; default 0)")
    slurm.add_argument("--mem-gb", type=float, help="memory per job (Slurm)")
    slurm.add_argument("--time-min", type=int, default=60, help="time limit per job in minutes (Slurm; default 60)")
    slurm.add_argument("--array-parallelism", type=int, default=64, help="array tasks at once (Slurm; default 64)")
    slurm.add_argument("--tasks-per-job", type=int,
                       help="processes per job; validations train data-parallel across them (Slurm; default: "
                            "one per GPU)")
    slurm.add_argument("--stage", action="append", default=[], metavar="KIND:KEY=VALUE,...",
                       help="resources of one stage that differ from the above, e.g. "
                            "distill:gpus=1,mem_gb=32,time_min=240 (keys: cpus, gpus, mem_gb, time_min, tasks, "
                            "partition); repeatable")
    slurm.add_argument("--requeues", type=int, default=3,
                       help="times a task is requeued after a timeout or preemption (default 3)")
    slurm.add_argument("--snapshot", action="store_true",
                       help="copy the code (a git checkout's tracked files) into SWEEP/code/ and run the jobs "
                            "from that copy, so later edits do not reach jobs already submitted")
    slurm.add_argument("--code", action="append", default=[], metavar="PATH",
                       help="your own code (a package folder or a module file: a network's or a data set's "
                            "factory): with --snapshot copied into it beside dpcluster's, else found where it is; "
                            "repeatable")
    slurm.add_argument("--wait", action="store_true",
                       help="follow the sweep to its end here (by default the command ends once Slurm holds "
                            "every job)")
    slurm.add_argument("--pack", choices=("auto", "never"), default="auto",
                       help="auto: where the partition runs fewer jobs at once than are ready, a Slurm task runs a "
                            "chain of them in turn (a search, then its levels); never: every job its own task "
                            "(default auto)")
    slurm.add_argument("--feed-seconds", type=float, default=60,
                       help="where the site's limits leave no room for every job at once: how long the feeder job "
                            "that submits the rest waits before it looks again (doubling while there is no room; "
                            "default 60)")
    ray = p.add_argument_group("ray")
    ray.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    # Each backend's own options, with their defaults: given with another backend, they are refused.
    p.set_defaults(handler=handle_sweep, backend_option_defaults={
        flag: p.get_default(_dest(flag)) for name in backend_names() for flag in get_backend(name).owns})
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
    from dpcluster.sweeps.coordinator import run_sweep, unfinished
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.spec import SweepSpec

    console = Console()
    sweep = SweepSpec.load(args.spec).with_assignments(args.set)
    expand(sweep)  # every spec mistake surfaces here, before the folder is made
    out = args.out or Path("sweeps") / sweep.name
    if not args.dry_run:
        writable_folder(out, "--out")
    tracks = tracks_of(args, out)
    backend = make_backend(args, out, console)
    entry = get_backend(args.backend)
    if entry.runs_here and not args.dry_run:
        # Elsewhere the device, the data and the set files are those of the job's machine, checked there. (Not
        # imported before: planning, dry runs and submitting never load torch.)
        from dpcluster.runtime import resolve_device
        from dpcluster.sweeps.preflight import preflight

        resolve_device(args.device)
        preflight(sweep, console.print)
    if args.dry_run:
        run_sweep(sweep, out, backend, args.device, _plain_line, dry_run=True)
        console.print(f"dry run: nothing submitted, nothing written to {out}")
        return 0
    save_tracks(tracks, out)
    follow = not entry.detaches or args.wait
    ended = 0

    def on_end(job) -> None:
        nonlocal ended
        if follow and not entry.runs_here:  # a backend running jobs here names each job as it starts
            ended += 1
            console.print(f"  ended: {job.name} ({ended} this run)")

    def say(text: str) -> None:  # unwrapped, so an error's log path can be copied
        console.print(text, soft_wrap=True, markup=False, highlight=False)

    manifest = run_sweep(sweep, out, backend, args.device, say, on_end, follow=follow,
                         retry_failed=args.retry_failed)
    console.print(status_table(manifest))
    not_done = unfinished(sweep, out)
    if not follow:
        waiting = sum(state.state == "running" for state in not_done)
        held = backend.held_jobs()
        if held:
            limit = backend.site_limits().tightest()
            why = f" ({limit.what} {limit.limit})" if limit is not None else ""
            if backend.feeder is None:
                console.print(f"Slurm's queue has no room for this sweep now{why}: {held} job(s) not submitted. "
                              f"Run the same command again later, or with --wait to submit them as room frees up.",
                              soft_wrap=True, markup=False)
                return 1
            console.print(f"{held} job(s) wait for room in Slurm's queue{why}: feeder job {backend.feeder} submits "
                          f"them as jobs end (it looks {backend.feed_seconds:g} s from now, then less often while "
                          f"there is no room).", soft_wrap=True, markup=False)
        if waiting or held:
            console.print(f"Slurm holds {waiting} job(s) of this sweep; this command is done and you may log "
                          f"off.\nFollow it with: dpcluster status {out}\nAfter a failure, run the same command "
                          f"again: it resubmits only what failed and what waited on it.")
            return 0
    if not_done:
        for line in not_done_lines(not_done, sweep.max_retries, out, each=False):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
        return 1
    console.print(f"Results: {out}/results (hive-partitioned Parquet), summary: {out}/aggregate.parquet")
    return 0


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def refuse_options_of_other_backends(args: argparse.Namespace, chosen: BackendEntry) -> None:
    """One line naming the options given (not at their default) that only another backend reads."""
    defaults = args.backend_option_defaults
    for name in backend_names():
        if name == chosen.name:
            continue
        given = [flag for flag in get_backend(name).owns if getattr(args, _dest(flag)) != defaults[flag]]
        if given:
            raise UserError(f"{', '.join(given)}: only for --backend {name}")


def make_backend(args: argparse.Namespace, out: Path, console: Console):
    from dpcluster.registry import resolve
    from dpcluster.sweeps.backends import DryRunBackend

    entry = get_backend(args.backend)
    refuse_options_of_other_backends(args, entry)
    if args.dry_run and not entry.shows_dry_run:
        return DryRunBackend(entry.name, _plain_line)
    return resolve(entry.make)(args, out, console, _plain_line)


def _plain_line(text: str) -> None:
    # A dry run of a large sweep says tens of thousands of lines: written as they are (rich would take seconds
    # to lay them out, and wrap the paths in them).
    sys.stdout.write(text + "\n")


def status_table(manifest) -> Table:
    from dpcluster.sweeps.jobs import kind_names

    counts = Counter((state.kind, state.state) for state in manifest.jobs.values())
    table = Table(title="Jobs by stage and state")
    from dpcluster.sweeps.manifest import STATES as states

    table.add_column("stage")
    for state in states:
        # A submitted job may be waiting in the scheduler's queue: "running" is the manifest's word for both.
        table.add_column("queued or running" if state == "running" else state, justify="right")
    for kind in kind_names():
        if any(k == kind for k, _ in counts):
            table.add_row(kind, *[str(counts.get((kind, state), 0)) for state in states])
    return table


def _manifest(folder: Path):
    from dpcluster.sweeps.manifest import Manifest

    path = SweepLayout(folder).manifest_file
    if not path.exists():
        raise UserError(f"{folder}: not a sweep folder (no {path.name})")
    return Manifest.open(path, read_only=True)


def handle_status(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.coordinator import observe
    from dpcluster.sweeps.feeder import feeder_line
    from dpcluster.sweeps.manifest import coordinator_active
    from dpcluster.sweeps.scheduler_state import queued, slurm_states
    from dpcluster.sweeps.spec import SweepSpec

    recorded = _manifest(args.dir)  # a clear error for a folder that is not a sweep's
    layout = SweepLayout(args.dir)
    # Jobs a run here left running, with no scheduler holding them, while no run holds the folder: interrupted.
    interrupted = [s for s in recorded.jobs.values() if s.state == "running" and s.scheduler_id is None] \
        if not coordinator_active(args.dir) else []
    # Brought up to date with what Slurm's jobs reported since the submitting command ended (nothing is saved).
    manifest = observe(args.dir)
    console = Console()
    console.print(status_table(manifest))
    followed = {job_id: s for job_id, s in manifest.jobs.items() if s.scheduler_id and s.state != "done"}
    in_queue = queued() or {}
    if followed:
        # The queue for what waits or runs (with why it waits), accounting for how the rest ended.
        ended = [s.scheduler_id for s in followed.values() if s.scheduler_id not in in_queue]
        slurm = {**slurm_states(ended), **in_queue}
        table = Table(title="Slurm's view of the jobs not done" + (
            f" (the first {STATUS_ROWS} of {len(followed):,})" if len(followed) > STATUS_ROWS else ""))
        for name in ("job", "Slurm id", "Slurm state", "waits for", "elapsed"):
            table.add_column(name)
        counts = Counter()
        for state in followed.values():
            known = slurm.get(state.scheduler_id)
            if known is not None:
                counts[(state.kind, known.state)] += 1
                if table.row_count < STATUS_ROWS:
                    table.add_row(state.name, state.scheduler_id, known.state,
                                  known.reason if known.state == "PENDING" else "", known.elapsed)
        by_stage = {}
        for (kind, slurm_state), count in sorted(counts.items()):
            by_stage.setdefault(kind, []).append(f"{slurm_state} {count}")
        for kind, parts in by_stage.items():
            console.print(f"Slurm, {kind}: " + ", ".join(parts))
        console.print(table)
    pending = sum(s.state == "pending" for s in manifest.jobs.values())
    line = feeder_line(SweepLayout(args.dir), in_queue, pending)
    if line:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if interrupted:
        console.print(f"{len(interrupted)} job(s) were interrupted (the run that started them was stopped): "
                      f"{', '.join(s.name for s in interrupted[:4])}{' ...' if len(interrupted) > 4 else ''}; run "
                      f"the sweep's command again to run them", soft_wrap=True, markup=False, highlight=False)
    max_retries = SweepSpec.load(layout.spec_file).max_retries if layout.spec_file.exists() else None
    spent = {id(s) for s in out_of_attempts(manifest.jobs.values(), max_retries)} if max_retries is not None else set()
    for state in manifest.jobs.values():
        if state.state == "failed":
            # Unwrapped, so the log path can be copied.
            why = "; out of attempts: --retry-failed runs it again" if id(state) in spent else ""
            console.print(f"failed ({state.attempts} attempt(s){why}): {state.name}: {state.error}", markup=False,
                          highlight=False, soft_wrap=True)
    return 0


def handle_cancel(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.feeder import read_record
    from dpcluster.sweeps.manifest import FolderBusy, Manifest, coordinator_lock
    from dpcluster.sweeps.scheduler_state import cancel_slurm

    manifest = _manifest(args.dir)
    layout = SweepLayout(args.dir)
    # First the marker, so a coordinator or feeder still running submits nothing more; then Slurm's jobs (whole
    # arrays where a job of them is running: every task of a sweep's array is the sweep's), and the feeder.
    layout.cancel_file.touch()
    running = {job_id: s for job_id, s in manifest.jobs.items() if s.state == "running" and s.scheduler_id}
    feeder = read_record(layout.feeder_file)
    cancel_slurm(sorted({s.scheduler_id.split("_")[0] for s in running.values()} |
                        ({feeder.scheduler_id} if feeder else set())))
    try:
        # Recorded here unless a coordinator is at work (a --wait): that one records them as Slurm reports them.
        with coordinator_lock(args.dir, wait_seconds=30):
            manifest = Manifest.open(layout.manifest_file)
            for job_id in running:
                if manifest.jobs[job_id].state == "running":  # a cancellation is not an attempt of the job's
                    manifest.release(job_id, "cancelled", "cancelled by dpcluster cancel")
            manifest.close()
    except FolderBusy:
        pass
    Console().print(f"cancelled {len(running)} job(s) in {len({s.scheduler_id for s in running.values()})} "
                    f"Slurm job(s); run the sweep again to start them anew")
    return 0


def handle_aggregate(args: argparse.Namespace) -> int:
    from dpcluster.sweeps.aggregate import aggregate
    from dpcluster.sweeps.coordinator import current_job_ids

    layout = SweepLayout(args.dir)
    summary = aggregate(args.dir, current_job_ids(args.dir))
    gridded = any(label is not None for label in summary["grid"].to_pylist())
    table = Table(title="Test accuracy (%) by data set, model, method" + (", grid point" if gridded else "")
                        + " and sparsity")
    for name in ("dataset", "model", "method", "ipc", *(("grid",) if gridded else ()), "sparsity", "mean", "std",
                 "count"):
        table.add_column(name, justify="right" if name not in ("dataset", "model", "method", "grid") else "left")
    for row in summary.to_pylist():
        table.add_row(row["dataset"], row["model"], row["method"], str(row["images_per_class"] or ""),
                      *((escape(row["grid"] or ""),) if gridded else ()),
                      f"{100 * row['sparsity']:.1f}%", f"{100 * row['test_accuracy_mean']:.1f}",
                      f"{100 * (row['test_accuracy_stddev'] or 0):.1f}", str(row["test_accuracy_count"]))
    console = Console()
    console.print(table)
    console.print(f"wrote {layout.aggregate_file}")
    return 0
