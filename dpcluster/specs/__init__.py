"""Typed, hashable, TOML-round-tripping specs."""

from dpcluster.specs.base import Spec, check, check_choice
from dpcluster.specs.experiment import (
    DataSpec,
    DistilledSpec,
    ExperimentSpec,
    ModelSpec,
    PruningSpec,
    RewindPoint,
    TrainingSpec,
)

__all__ = [
    "Spec", "check", "check_choice", "DataSpec", "DistilledSpec", "ExperimentSpec", "ModelSpec",
    "PruningSpec", "RewindPoint", "TrainingSpec",
]
