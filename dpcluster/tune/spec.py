"""A search spec: a base experiment, a space over its fields by dotted key (``distilled_training.lr``), an
objective with its mode, and how the search runs. Checked when it loads: an unknown key, an empty range or a
value of the wrong type for its field is one line naming the key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpcluster.errors import SpecError, UserError
from dpcluster.specs import ExperimentSpec
from dpcluster.specs.base import Spec, check, check_choice, coerce_value, dotted, field_values, value_at

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")
ALGORITHMS = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
MODES = ("max", "min")
SEARCH_KEYS = ("samples", "algorithm", "scheduler", "cpus", "gpus", "reports", "seed", "validation")


@dataclass(frozen=True)
class Dimension:
    """One searched field: ``uniform``/``loguniform``/``randint`` over [low, high], or ``choice``/``grid`` over
    values."""

    key: str
    distribution: str
    values: tuple


@dataclass(frozen=True)
class SearchSpec(Spec):
    """A search: its TOML file has ``name``, ``[objective]`` (``kind``, ``mode`` and the objective's own
    settings), ``[search]`` (the fields from ``samples`` to ``validation``), ``[space]`` and ``[base]``. Loaded,
    saved, printed and hashed as every spec is; the tables map onto its fields in ``from_dict``/``to_dict``."""

    name: str = "search"
    base: ExperimentSpec = field(default_factory=ExperimentSpec)
    space: tuple[Dimension, ...] = ()
    objective: str = "distilled_accuracy"
    mode: str = "max"
    samples: int = 8
    algorithm: str = "random"
    scheduler: str = "asha"
    cpus: float = 1.0
    gpus: float = 0.0
    # Test the network this many times per training (the points ASHA compares trials at).
    reports: int = 10
    seed: int = 0
    # The fraction of the training split held out (drawn by ``seed``) that trials are scored on and never train
    # on; 0 scores them on the test split.
    validation: float = 0.1
    # The objective's own settings (``[objective]`` less kind and mode), checked against its options.
    objective_settings: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        from dpcluster.tune.objectives import get_objective, objective_names

        check_choice(self.objective, objective_names(), "objective.kind")
        check_choice(self.mode, MODES, "objective.mode")
        check_choice(self.algorithm, ALGORITHMS, "search.algorithm")
        check_choice(self.scheduler, SCHEDULERS, "search.scheduler")
        for key in ("samples", "reports"):
            check(getattr(self, key) >= 1, f"search.{key}", f"must be a whole number >= 1, got {getattr(self, key)!r}")
        for key in ("cpus", "gpus"):
            check(getattr(self, key) >= 0, f"search.{key}", f"must be a number >= 0, got {getattr(self, key)!r}")
        check(0 <= self.validation < 1, "search.validation", f"must be a fraction in [0, 1), got {self.validation!r}")
        check(bool(self.space), "space", "nothing to search: give at least one field, e.g. "
                                         "\"distilled_training.lr\" = { loguniform = [0.001, 0.1] }")
        if self.algorithm == "optuna":
            for d in self.space:
                check(d.distribution != "grid", f"space.{d.key}",
                      "a grid needs algorithm = \"grid\" or \"random\" (Optuna samples)")
                check(not any(isinstance(v, list | dict | tuple) for v in d.values), f"space.{d.key}",
                      "Optuna chooses among numbers and strings only: use algorithm = \"random\" for a choice of lists")
        get_objective(self.objective).check(self)

    @property
    def settings(self) -> dict[str, float]:
        return dict(self.objective_settings)

    @property
    def trials(self) -> int:
        """How many trials run: ``samples`` draws, each over every point of the grids."""
        return self.samples * math.prod(len(d.values) for d in self.space if d.distribution == "grid")

    @property
    def metric(self) -> str:
        from dpcluster.tune.objectives import get_objective

        return get_objective(self.objective).metric

    def configured(self, config: dict[str, Any]) -> ExperimentSpec:
        """The base experiment with a trial's values at their dotted keys."""
        return self.base.with_values(config)

    def to_dict(self) -> dict:
        """The spec as its TOML file has it: ``from_dict(to_dict())`` gives it back."""
        return {
            "name": self.name,
            "objective": {"kind": self.objective, "mode": self.mode, **self.settings},
            "search": {key: getattr(self, key) for key in SEARCH_KEYS},
            "space": {d.key: {d.distribution: list(d.values)} for d in self.space},
            "base": self.base.to_dict(),
        }

    def identity_dict(self) -> dict:
        return self.to_dict()

    def with_base_assignments(self, assignments) -> SearchSpec:
        """This search over its base experiment with ``KEY=VALUE`` texts applied (``--set``), every dimension of
        the space checked again against the new base."""
        if not assignments:
            return self
        base = self.base.with_assignments(assignments)
        try:
            return SearchSpec.from_dict({**self.to_dict(), "base": base.to_dict()})
        except SpecError as error:
            raise UserError(f"--set: {error}") from None

    @classmethod
    def from_file_dict(cls, data: dict, path: Path) -> SearchSpec:
        # A [base] sweep = "..." path is relative to the search spec's folder.
        return cls.from_dict(data, origin=path.parent)

    @classmethod
    def from_dict(cls, data: dict, origin: Path | None = None) -> SearchSpec:
        """``origin``: the folder a ``[base] sweep = "..."`` path is relative to (default: the working folder)."""
        from dpcluster.tune.objectives import get_objective, objective_names

        known = {"name", "base", "space", "objective", "search"}
        for key in data:
            if key not in known:
                raise SpecError(key, f"unknown key (known: {', '.join(sorted(known))})")
        try:
            base = base_experiment(dict(data.get("base", {})), origin)
        except SpecError as error:
            raise error.under("base") from None
        space = tuple(_dimension(key, value, base) for key, value in data.get("space", {}).items())
        objective = dict(data.get("objective", {}))
        search = dict(data.get("search", {}))
        kind = objective.pop("kind", "distilled_accuracy")
        check_choice(kind, objective_names(), "objective.kind")
        mode = objective.pop("mode", get_objective(kind).mode)
        settings = tuple(get_objective(kind).settings(objective).items())
        try:
            values = field_values(cls, search, SEARCH_KEYS)
        except SpecError as error:
            raise error.under("search") from None
        return cls(name=coerce_value(data.get("name", "search"), str, "name"), base=base, space=space,
                   objective=kind, mode=mode, objective_settings=settings, **values)


# What picks one experiment of a sweep, and how each experiment says it.
SWEEP_SELECTORS = {
    "method": lambda e: e.method, "dataset": lambda e: e.data.partition_name, "model": lambda e: e.model.name,
    "images_per_class": lambda e: e.distilled.images_per_class if e.uses_distilled_set else None,
    "rewind": lambda e: e.pruning.rewind, "seed": lambda e: e.seed,
}


def base_experiment(table: dict, origin: Path | None) -> ExperimentSpec:
    """``[base]``: an experiment's own tables, or ``sweep = "PATH"`` with selectors (``method``, ``dataset``, ...)
    naming one of that sweep's experiments (its first seed unless ``seed`` says), the rest of the table changing
    it as an experiment's tables would."""
    if "sweep" not in table:
        return ExperimentSpec.from_dict(table)
    from dpcluster.sweeps.graph import experiments
    from dpcluster.sweeps.spec import SweepSpec

    path = Path(table.pop("sweep"))
    path = path if path.is_absolute() or origin is None else origin / path
    try:
        sweep = SweepSpec.load(path)
    except UserError as error:
        raise SpecError("sweep", str(error)) from None
    chosen = {key: table.pop(key) for key in list(table) if key in SWEEP_SELECTORS}
    chosen.setdefault("seed", sweep.seeds[0])
    candidates = experiments(sweep)
    for key, value in chosen.items():
        matching = [e for e in candidates if SWEEP_SELECTORS[key](e) == value]
        if not matching:
            have = sorted({str(SWEEP_SELECTORS[key](e)) for e in candidates})
            raise SpecError(key, f"{path} has no experiment with {key} = {value!r} among those chosen (it has "
                                 f"{', '.join(have)})")
        candidates = matching
    for key, of in SWEEP_SELECTORS.items():
        values = sorted({str(of(e)) for e in candidates})
        if len(values) > 1:
            raise SpecError(key, f"{path} has experiments with {key} {', '.join(values)}: choose one "
                                 f"({key} = ...)")
    return candidates[0].with_values(dotted(table))


def _leaf_exists(key: str, base: ExperimentSpec) -> bool:
    """Whether the dotted ``key`` names a field of the spec that holds a value (not a table)."""
    import dataclasses

    try:
        return not dataclasses.is_dataclass(value_at(base, key))
    except KeyError:
        return False


def _dimension(key: str, value: Any, base: ExperimentSpec) -> Dimension:
    where = f"space.{key}"
    if not _leaf_exists(key, base):
        raise SpecError(where, "no such field of an experiment spec (write its dotted key, e.g. "
                               "distilled_training.lr)")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise SpecError(where, f"expected one of {', '.join(DISTRIBUTIONS)}, e.g. {{ loguniform = [0.001, 0.1] }}")
    (distribution, values), = value.items()
    if not isinstance(values, list) or not values:
        raise SpecError(where, f"{distribution}: expected a non-empty list")
    if distribution in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise SpecError(where, f"{distribution}: expected [low, high], got {values}")
        low, high = values
        if not low < high:
            raise SpecError(where, f"{distribution}: empty range [{low}, {high}] (low must be below high)")
        if distribution == "loguniform" and low <= 0:
            raise SpecError(where, f"loguniform: low must be above 0, got {low}")
        if distribution == "randint" and not all(isinstance(v, int) for v in values):
            raise SpecError(where, f"randint: expected whole numbers, got {values}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise SpecError(where, f"{distribution}: expected finite numbers, got {values}")
    candidates = list(values)
    if distribution in ("uniform", "loguniform"):  # a drawn value is fractional: an int field needs randint
        candidates.append(values[0] + 0.37 * (values[1] - values[0]))
    for candidate in candidates:
        try:
            base.with_values({key: candidate})
        except SpecError as error:
            raise SpecError(where, f"{candidate!r} does not suit the field: {error.message}") from None
    return Dimension(key, distribution, tuple(values))
