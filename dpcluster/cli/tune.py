"""``dpcluster tune``: a hyperparameter search with Ray Tune, on a local Ray, an existing Ray cluster, or as one
Slurm job with a Ray of its own inside the allocation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from dpcluster.cli.options import add_set_option, add_track_option, save_tracks, tracks_of, writable_folder
from dpcluster.cli.slurm_options import add_site_options
from dpcluster.errors import UserError

_console = Console()


def say(text: str) -> None:
    """Module-level, so Tune can keep it with the search and call it again when the search resumes."""
    _console.print(text, soft_wrap=True, markup=False, highlight=False)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("tune", help="search hyperparameters with Ray Tune (jobs/tune_*.toml)",
                            description="Run a search spec's trials with Ray Tune and write every trial's "
                                        "reports as Parquet and the best configuration as spec files. Running "
                                        "it again resumes an interrupted search.")
    p.add_argument("spec", type=Path, help="search spec (TOML), e.g. jobs/tune_digits_distilled.toml")
    add_set_option(p, "the search's base experiment")
    add_track_option(p)
    p.add_argument("--out", type=Path, help="search folder (default searches/<name>)")
    p.add_argument("--backend", choices=("ray", "slurm"), default="ray",
                   help="ray: a local Ray or --address (default); slurm: one Slurm job running a Ray of its own")
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    slurm = p.add_argument_group("slurm (the job that runs the search; its trials share its CPUs and GPUs)")
    add_site_options(slurm, "the search's job")
    slurm.add_argument("--cpus", type=int, default=2, help="CPUs of the job (default 2)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs of the job (default 0)")
    slurm.add_argument("--mem-gb", type=float, help="memory of the job")
    slurm.add_argument("--time-min", type=int, default=240, help="time limit in minutes (default 240)")
    slurm.add_argument("--wait", action="store_true", help="follow the job to its end (default: return once "
                                                           "Slurm holds it)")
    p.set_defaults(handler=handle_tune)


SLURM_ONLY = ("partition", "account", "qos", "constraint", "mem_gb", "wait")


def handle_tune(args: argparse.Namespace) -> int:
    from dpcluster.tune.spec import SearchSpec

    if args.backend == "slurm" and args.address:
        raise UserError("--address is for --backend ray: a Slurm job starts a Ray of its own")
    if args.backend != "slurm":
        given = [f"--{name.replace('_', '-')}" for name in SLURM_ONLY if getattr(args, name)]
        given += ["--setup"] * bool(args.setup) + ["--sbatch"] * bool(args.sbatch)
        if given:
            raise UserError(f"{given[0]} is for --backend slurm")
    search = SearchSpec.load(args.spec).with_base_assignments(args.set)
    out = writable_folder(args.out or Path("searches") / search.name, "--out")
    save_tracks(tracks_of(args, out), out)  # every trial reports to them, wherever Ray runs it
    say(f"searching {', '.join(d.key for d in search.space)} for the best {search.metric} ({search.mode}), "
        f"{search.trials} trial(s), {search.algorithm} search, {search.scheduler} scheduler")
    if args.backend == "slurm":
        return _on_slurm(args, search, out)
    from dpcluster.tune.run import SearchInterrupted, run_search

    try:
        best = run_search(search, out, args.address, args.device, say)
    except SearchInterrupted as interrupted:
        print(f"dpcluster: {interrupted}", file=sys.stderr)
        return 130
    _say_best(best, out)
    return 0


def _say_best(best: Path, out: Path) -> None:
    say(f"best configuration: {best} (dpcluster run --config {best}; dpcluster sweep "
        f"{best.with_name('best_sweep.toml')})")
    say(f"every trial's reports: {out}/trials (Parquet)")


def _on_slurm(args: argparse.Namespace, search, out: Path) -> int:
    from dpcluster.sweeps.slurm_backend import SlurmBackend, parse_sbatch
    from dpcluster.tune.slurm import follow, submit_search

    for name in ("cpus", "time_min"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {args.gpus}")
    if args.cpus < search.cpus or args.gpus < search.gpus:
        raise UserError(f"a trial asks for {search.cpus} CPU(s) and {search.gpus} GPU(s) (search.cpus, "
                        f"search.gpus), more than the job's --cpus {args.cpus} --gpus {args.gpus}")
    backend = SlurmBackend(Path(out).resolve() / "logs", args.partition, args.account, args.qos, args.constraint,
                           args.gpus, args.cpus, args.mem_gb, args.time_min, tasks_per_job=1,
                           setup=tuple(args.setup), sbatch=dict(parse_sbatch(text) for text in args.sbatch),
                           requeues=0)
    job_id = submit_search(search, out, backend, args.device, say)
    if not args.wait:
        say(f"follow it: squeue -j {job_id}; when it ends, the best configuration is {Path(out) / 'best.toml'} "
            f"(the same command with --wait follows it)")
        return 0
    if not follow(job_id, out, say):
        return 1
    _say_best(Path(out) / "best.toml", out)
    return 0
