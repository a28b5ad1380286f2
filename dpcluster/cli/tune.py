"""``dpcluster tune``: a hyperparameter search with Ray Tune, on a local Ray or an existing cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

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
    p.add_argument("--out", type=Path, help="search folder (default searches/<name>)")
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.set_defaults(handler=handle_tune)


def handle_tune(args: argparse.Namespace) -> int:
    from dpcluster.tune.run import SearchInterrupted, run_search
    from dpcluster.tune.spec import SearchSpec

    search = SearchSpec.load(args.spec)
    out = args.out or Path("searches") / search.name
    say(f"searching {', '.join(d.key for d in search.space)} for the best {search.metric} ({search.mode}), "
        f"{search.trials} trial(s), {search.algorithm} search, {search.scheduler} scheduler")
    try:
        best = run_search(search, out, args.address, args.device, say)
    except SearchInterrupted as interrupted:
        print(f"dpcluster: {interrupted}", file=sys.stderr)
        return 130
    say(f"best configuration: {best} (dpcluster run --config {best}; dpcluster sweep {best.with_name('best_sweep.toml')})")
    say(f"every trial's reports: {out}/trials (Parquet)")
    return 0
