"""The sweep spec (TOML under ``jobs/``): which experiments to run, as lists, over a base experiment.

    name = "digits-small"
    datasets = ["digits"]
    models = ["convnet"]
    methods = ["imp", "distilled", "random"]
    seeds = [0, 1, 2]
    sparsities = [0.5, 0.8, 0.9]      # validated levels; each is reached by the first round at or past it
    images_per_class = [10]           # distilled-set sizes (for distilled and hybrid)

    [base]                            # an ExperimentSpec: training, pruning, distilled settings
    training = { epochs = 15 }

    [data.cifar10]                    # DataSpec fields for one data set (its root, ...)
    root = "/data/cifar"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dpcluster.errors import SpecError
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, Spec, check, check_choice
from dpcluster.methods.registry import method_names
from dpcluster.specs.experiment import DATASETS, MODELS


@dataclass(frozen=True)
class DataChoice(Spec):
    """Per-data-set settings of a sweep: the DataSpec fields other than the name."""

    root: str | None = None
    classes: tuple[str, ...] | None = None
    resolution: int = 128
    placement: str = "auto"
    workers: int = 4
    zca: bool = False


@dataclass(frozen=True)
class SweepSpec(Spec):
    name: str = "sweep"
    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("convnet",)
    methods: tuple[str, ...] = ("dense", "imp", "distilled", "random")
    seeds: tuple[int, ...] = (0,)
    # Validated sparsity levels; empty: every round of the base spec's pruning schedule.
    sparsities: tuple[float, ...] = ()
    images_per_class: tuple[int, ...] = (10,)
    base: ExperimentSpec = field(default_factory=ExperimentSpec)
    # Per data set (keyed by name), e.g. its root folder.
    data: tuple[tuple[str, DataChoice], ...] = ()
    # Failed jobs are retried this many times when the sweep is run again.
    max_retries: int = 2

    def __post_init__(self):
        check(bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name), "name",
              f"must be letters, digits, '-', '_' or '.', got {self.name!r}")
        for key, values, choices in (("datasets", self.datasets, DATASETS), ("models", self.models, MODELS),
                                     ("methods", self.methods, method_names())):
            check(len(values) > 0, key, "must not be empty")
            for i, value in enumerate(values):
                check_choice(value, choices, f"{key}[{i}]")
        check(len(self.seeds) > 0 and all(s >= 0 for s in self.seeds), "seeds", "must be a non-empty list of seeds >= 0")
        for i, s in enumerate(self.sparsities):
            check(0 < s < 1, f"sparsities[{i}]", f"must be in (0, 1), got {s}")
        check(len(self.images_per_class) > 0 and all(k >= 1 for k in self.images_per_class), "images_per_class",
              "must be a non-empty list of counts >= 1")
        check(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        for name, _ in self.data:
            check(name in self.datasets, f"data.{name}", f"{name!r} is not one of the sweep's datasets")

    @classmethod
    def from_dict(cls, data):
        # [data.NAME] tables arrive as a mapping; keep them as sorted (name, choice) pairs so the spec hashes.
        data = dict(data)
        tables = data.pop("data", {})
        if not isinstance(tables, dict):
            raise SpecError("data", "must be a table of [data.NAME] tables")
        spec = super().from_dict(data)
        choices = []
        for name, table in sorted(tables.items()):
            try:
                choices.append((name, DataChoice.from_dict(table)))
            except SpecError as error:
                raise error.under(f"data.{name}") from None
        return spec.replace(data=tuple(choices))

    def to_dict(self):
        out = super().to_dict()
        out["data"] = {name: choice.to_dict() for name, choice in self.data}
        return out

    def data_spec(self, name: str) -> DataSpec:
        choice = dict(self.data).get(name, DataChoice())
        base = self.base.data
        try:
            return DataSpec(name=name, root=choice.root, classes=choice.classes, resolution=choice.resolution,
                            test_fraction=base.test_fraction, split_seed=base.split_seed, placement=choice.placement,
                            workers=choice.workers, zca=choice.zca)
        except SpecError as error:
            raise error.under(f"data.{name}") from None

    def model_spec(self, name: str) -> ModelSpec:
        base = self.base.model
        return base if base.name == name else ModelSpec(name=name)

    def rounds(self) -> tuple[int, ...]:
        """The validated rounds: the first round at or past each sparsity level (or every round)."""
        pruning = self.base.pruning
        if not self.sparsities:
            return tuple(range(1, pruning.num_rounds + 1))
        return tuple(sorted({math.ceil(math.log(1 - s) / math.log(1 - pruning.rate) - 1e-9)
                             for s in self.sparsities}))
