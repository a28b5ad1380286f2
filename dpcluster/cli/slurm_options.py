"""The Slurm site options every command that submits takes (where the jobs go, what runs before them, sbatch
options passed through), so `dpcluster sweep` and `dpcluster tune` name and explain them alike."""

from __future__ import annotations

import argparse


def add_site_options(group: argparse._ArgumentGroup, jobs: str) -> None:
    """``jobs``: what the options apply to, as the help says it ("each job", "the search's job")."""
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--qos")
    group.add_argument("--constraint")
    group.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help=f"a shell line {jobs} runs first (module load, source venv/bin/activate); repeatable")
    group.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="an sbatch option passed through as --KEY=VALUE (e.g. mail-type=END); repeatable")
