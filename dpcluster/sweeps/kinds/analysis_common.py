"""What the analysis kinds share: the level a job measures, its pair of trained copies, and its fixed data."""

from __future__ import annotations

import torch

from dpcluster.data.base import TensorSet, first_examples
from dpcluster.methods.engine import TrainedPair
from dpcluster.pruning.masks import sparsity, unpack_mask
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, Planner

# The kinds that measure the trained pair of a level.
PAIR_ANALYSES = ("stability", "landscape", "sharpness")


def level_key(spec: ExperimentSpec, round_index: int, **settings) -> dict:
    return {"experiment": spec.experiment_id, "round": round_index, **settings}


def label(job: Job) -> str:
    spec = job.experiment
    return f"{job.kind}-{spec.method}-s{spec.seed}-{spec.data.name}-{spec.model.name}-r{job.round}"


def level_columns(spec: ExperimentSpec, round_index: int, mask) -> dict:
    from dpcluster.methods.registry import get_method

    return {"experiment_id": spec.experiment_id, "seed": spec.seed, "round": round_index,
            "sparsity": sparsity(mask), "images_per_class": spec.distilled.images_per_class
            if spec.uses_distilled_set else 0,
            "rewind": spec.pruning.rewind if get_method(spec.method).rewinds else None}


def wants(planner: Planner, kind: str) -> bool:
    return kind in planner.sweep.analyses


def load_pair(path) -> TrainedPair:
    saved = torch.load(path, weights_only=True)
    return TrainedPair(unpack_mask(saved["mask"]), saved["start"], saved["a"], saved["b"])


def subset(split, count: int | None) -> TensorSet:
    return first_examples(split, count)


def build(spec: ExperimentSpec, inputs, device: torch.device) -> torch.nn.Module:
    from dpcluster.models import build_model

    return build_model(spec.model, inputs.data.input_shape, inputs.data.num_classes).to(device)
