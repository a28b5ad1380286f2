"""Where one experiment's mask search keeps its files in its folder (no torch: the coordinator checks they are
there for every finished search at the start of a run).

    RUN/spec.toml            the experiment
    RUN/init.pt              the exact initial weights (and buffers), stored once as the search starts, with the
                             rewind point in iterations: every later use reads them rather than regenerating them
                             from the seed (which another torch version may do differently)
    RUN/rounds.parquet       one record per round, written when the search has finished
    RUN/checkpoint.pt        the search's state after its last finished round, while it runs
    RUN/rewind.pt            the rewind point's state (when rewinding past initialisation; at 0 it is init.pt's)
    RUN/trained/round-NNN.pt the levels' trained networks, where the sweep keeps them (``keep_trained``)
    RUN/masks/round-NNN.pt   every round's mask (kept for the levels' own validations)
    RUN/progress/            the training under way, epoch by epoch
"""

from __future__ import annotations

from pathlib import Path

RESULTS_FILE = "rounds.parquet"
REWIND_FILE = "rewind.pt"
INIT_FILE = "init.pt"
SPEC_FILE = "spec.toml"
CHECKPOINT_FILE = "checkpoint.pt"
# Per-epoch progress of the training under way, so a stopped run resumes mid-training.
PROGRESS_DIR = "progress"


def mask_path(run_dir: Path, round_index: int) -> Path:
    return Path(run_dir) / "masks" / f"round-{round_index:03d}.pt"


def trained_path(run_dir: Path, round_index: int) -> Path:
    """Where a level's trained network is kept (round 0: the dense network)."""
    return Path(run_dir) / "trained" / f"round-{round_index:03d}.pt"
