"""``dpcluster run``: compare pruning methods across seeds on one data set and model, on this machine.

A run is a sweep on the local backend: one data set, one model, the given methods and seeds, every round
validated. It writes the same sweep folder, through the same jobs, as ``dpcluster sweep``."""

from __future__ import annotations

import argparse

from rich.console import Console

from dpcluster.cli.names import described
from dpcluster.cli.options import (add_spec_options, add_track_option, override, save_tracks, spec_from_options,
                                   tracks_of, writable_folder)
from dpcluster.cli.unfinished import add_retry_failed, not_done_lines
from dpcluster.distilled.registry import FILE_SOURCE, distiller_names, format_names, get_distiller, get_format
from dpcluster.errors import SpecError, UserError
from dpcluster.methods.registry import method_names
from dpcluster.specs import DistilledSpec, ExperimentSpec
from dpcluster.sweeps.spec import SweepSpec

DEFAULT_METHODS = ("dense", "imp", "distilled", "random")
# Three seeds: every cell of the table is a mean ± std, as in the papers' figures.
DEFAULT_SEEDS = (0, 1, 2)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("run", help="run pruning experiments here and print accuracy by sparsity",
                            description="Run dense, IMP, distilled, hybrid and random pruning across seeds and "
                                        "compare them. With no options: all four default methods on digits.")
    add_spec_options(p)
    p.add_argument("--methods", help=f"comma-separated, from {', '.join(method_names())} "
                                     f"(default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--seeds", help=f"comma-separated seeds, each replacing the spec's seed "
                                   f"(default {','.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--analyses", help="comma-separated analyses of every level: stability, landscape, sharpness, "
                                      "kept_weights (default none; see dpcluster report)")
    p.add_argument("--rounds", type=int, help="pruning rounds (20%% of the remaining weights each)")
    p.add_argument("--target-sparsity", type=float, help="prune until at least this fraction is removed")
    p.add_argument("--epochs", type=int, help="real-data training epochs")
    p.add_argument("--distilled-epochs", type=int, help="epochs of training on the distilled set")
    default = DistilledSpec()
    p.add_argument("--distill", choices=distiller_names(),
                   help=f"distil the set here (default {default.source}); "
                        f"{described(get_distiller, distiller_names())}")
    p.add_argument("--distilled", help="use this distilled set instead of distilling one here")
    p.add_argument("--distilled-format", choices=format_names(), default=default.format,
                   help=f"format of --distilled (default: {default.format}); "
                        f"{described(get_format, format_names())}")
    add_track_option(p)
    add_retry_failed(p)
    p.set_defaults(handler=handle)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise UserError(f"{option}: no values given")
    return values


def base_spec(args: argparse.Namespace) -> ExperimentSpec:
    """The spec from --config (or the defaults) with the command-line options applied."""
    spec = spec_from_options(args)
    if args.rounds is not None and args.target_sparsity is not None:
        raise UserError("give --rounds or --target-sparsity, not both")
    if args.rounds is not None:
        spec = override(spec, "pruning", "--rounds", rounds=args.rounds, target_sparsity=None)
    if args.target_sparsity is not None:
        spec = override(spec, "pruning", "--target-sparsity", target_sparsity=args.target_sparsity, rounds=None)
    if args.epochs is not None:
        spec = override(spec, "training", "--epochs", epochs=args.epochs)
    if args.distilled_epochs is not None:
        spec = override(spec, "distilled_training", "--distilled-epochs", epochs=args.distilled_epochs)
    if args.distilled is not None:
        if args.distill is not None:
            raise UserError("give --distill or --distilled, not both")
        spec = override(spec, "distilled", "--distilled", source=FILE_SOURCE, format=args.distilled_format,
                         path=args.distilled)
    if args.distill is not None:
        spec = override(spec, "distilled", "--distill", source=args.distill, path=None)
    return spec


def expand(spec: ExperimentSpec, args: argparse.Namespace) -> list[ExperimentSpec]:
    # Given but empty ("--methods ''") is a mistake, not the defaults.
    methods = [m.strip() for m in (",".join(DEFAULT_METHODS) if args.methods is None else args.methods).split(",")
               if m.strip()]
    unknown = [m for m in methods if m not in method_names()]
    if unknown or not methods:
        raise UserError(f"--methods: unknown method {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(method_names())}")
    seeds = _ints(args.seeds, "--seeds") if args.seeds is not None else list(DEFAULT_SEEDS)
    out = []
    for method in dict.fromkeys(methods):
        for seed in dict.fromkeys(seeds):
            try:
                out.append(spec.replace(method=method, seed=seed))
            except SpecError as error:
                raise UserError(f"{error} (method {method}, seed {seed})") from None
    return out


def as_sweep(specs: list[ExperimentSpec], analyses: str | None = None) -> SweepSpec:
    """The sweep whose experiments are ``specs`` (one base spec, varied by method and seed), with ``analyses``
    (comma-separated) of every level."""
    base = specs[0]
    try:
        return SweepSpec(name="run", datasets=(base.data.name,), models=(base.model.name,),
                         methods=tuple(dict.fromkeys(s.method for s in specs)),
                         seeds=tuple(dict.fromkeys(s.seed for s in specs)),
                         images_per_class=(base.distilled.images_per_class,), base=base,
                         analyses=tuple(a.strip() for a in (analyses or "").split(",") if a.strip()))
    except SpecError as error:
        option = "--analyses" if error.key.startswith("analyses") else error.key
        raise UserError(f"{option}: {error.message}") from None


def handle(args: argparse.Namespace) -> int:
    import sys

    from dpcluster.cli.progress import RichReporter, distill_progress
    from dpcluster.cli.tables import accuracy_table, cost_table
    from dpcluster.runtime import resolve_device
    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.coordinator import run_sweep, sweep_records, unfinished
    from dpcluster.sweeps.preflight import preflight

    # Jobs log their output to files; the terminal keeps the progress and tables.
    console = Console(file=sys.stdout)
    sweep = as_sweep(expand(base_spec(args), args), args.analyses)
    writable_folder(args.out, "--out")
    tracks = tracks_of(args, args.out)
    resolve_device(args.device)
    preflight(sweep, console.print)  # every mistake surfaces here, before anything is written
    save_tracks(tracks, args.out)
    with RichReporter(console, len(unfinished(sweep, args.out))) as reporter, \
            distill_progress(console) as on_iteration:
        backend = LocalBackend(on_start=reporter.start_job, reporter=reporter, distill_progress=on_iteration)
        run_sweep(sweep, args.out, backend, args.device, on_end=lambda job: reporter.end_job(),
                  retry_failed=args.retry_failed)
    records = sweep_records(sweep, args.out)
    if records:
        console.print(accuracy_table(records))
        console.print(cost_table(records))
    console.print(f"Results: {args.out}/results (hive-partitioned Parquet, a row per validated level; "
                  f"mask searches under {args.out}/masks)")
    not_done = unfinished(sweep, args.out)
    for line in not_done_lines(not_done, sweep.max_retries, args.out):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    return 1 if not_done else 0
