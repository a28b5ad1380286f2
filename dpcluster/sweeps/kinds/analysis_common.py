"""What the analysis kinds share: the level a job measures, its pair of trained copies, and its fixed data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, Planner, get_kind, kind_names
from dpcluster.sweeps.kinds.mask import levels

if TYPE_CHECKING:
    import torch

    from dpcluster.methods.engine import TrainedPair

def pair_analyses() -> tuple[str, ...]:
    """The kinds that measure the trained pair of a level (``JobKind.measures_pair``), in planning order."""
    return tuple(name for name in kind_names() if get_kind(name).measures_pair)


def wants_pairs(planner: Planner) -> bool:
    """Whether the sweep asks for an analysis of the levels' trained pairs."""
    return any(wants(planner, kind) for kind in pair_analyses())


def level_key(spec: ExperimentSpec, round_index: int, **settings) -> dict:
    return {"experiment": spec.experiment_id, "round": round_index, **settings}


def level_columns(spec: ExperimentSpec, round_index: int, mask) -> dict:
    from dpcluster.pruning.masks import sparsity

    return {"experiment_id": spec.experiment_id, "seed": spec.seed, "round": round_index,
            "sparsity": sparsity(mask), "images_per_class": spec.set_size, "rewind": spec.rewind_point_used,
            "grid": spec.grid_label}


def pair_columns(job: Job, pair: TrainedPair) -> dict:
    """The level columns of a pair analysis's rows, with the number of processes both copies trained on."""
    return {**level_columns(job.experiment, job.round, pair.mask), "world_size": pair.world_size}


def rows_present(job: Job, layout) -> bool:
    """An analysis job's rows are in its data set (its ``outputs_present``)."""
    from dpcluster.results.store import rows_written

    return rows_written(layout.analysis_file(job.kind, job.experiment, job.id))


def wants(planner: Planner, kind: str) -> bool:
    return kind in planner.sweep.analyses


def analysed_levels(planner: Planner, spec: ExperimentSpec) -> tuple[int, ...]:
    """The levels of ``spec`` the analyses measure: its validated rounds at ``analysis.sparsities`` (all of them
    by default), or round 0 alone for a method that does not prune."""
    rounds = levels(planner, spec)[0]
    if rounds == (0,):
        return rounds
    analysed = set(planner.sweep.analysed_rounds())
    return tuple(r for r in rounds if r in analysed)


def load_pair(path) -> TrainedPair:
    import torch

    from dpcluster.methods.engine import TrainedPair
    from dpcluster.pruning.masks import unpack_mask

    saved = torch.load(path, weights_only=True)
    return TrainedPair(unpack_mask(saved["mask"]), saved["a"], saved["b"], saved.get("world_size"))


def build(spec: ExperimentSpec, inputs, device: torch.device) -> torch.nn.Module:
    from dpcluster.models import build_model

    return build_model(spec.model, inputs.data.input_shape, inputs.data.num_classes).to(device)


def plan_on_pairs(planner: Planner, spec: ExperimentSpec, kind: str, **settings) -> None:
    """Jobs of ``kind`` for every level of ``spec``, each after the level's pair; ``settings`` are those of the
    sweep's ``[analysis]`` that change the job's outputs (they go into its id)."""
    if not wants(planner, kind):
        return
    for r in analysed_levels(planner, spec):
        pair = planner.find("pair", spec, r)
        planner.add(kind, level_key(spec, r, **settings), spec, r, (pair.id,), planner.sweep.analysis)


@dataclass
class PairLevel:
    """What a pair analysis job measures: where its rows go, the experiment's inputs, the level's trained pair,
    and a network of the experiment's model to load them into."""

    path: Path
    inputs: object
    pair: TrainedPair
    model: torch.nn.Module


def open_pair_level(job: Job, context) -> PairLevel | None:
    """The job's level, or None when its rows are already written."""
    from dpcluster.results.store import rows_written

    spec = job.experiment
    path = context.layout.analysis_file(job.kind, spec, job.id)
    if rows_written(path):
        return None
    inputs = context.inputs(spec)
    return PairLevel(path, inputs, load_pair(context.layout.pair_file(spec, job.round)),
                     build(spec, inputs, context.device))
