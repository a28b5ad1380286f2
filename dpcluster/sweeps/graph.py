"""The job graph of a sweep: every experiment of the spec, and the jobs each registered kind plans for it, in
dependency order (kinds are planned in registry order; see ``dpcluster.sweeps.jobs``)."""

from __future__ import annotations

from dpcluster.errors import SpecError
from dpcluster.specs import ExperimentSpec
from dpcluster.specs.base import Table
from dpcluster.sweeps.jobs import Job, Planner, get_kind, kind_names
from dpcluster.sweeps.spec import SweepSpec


def experiments(sweep: SweepSpec) -> list[ExperimentSpec]:
    """Every experiment of the sweep (methods that use no distilled set appear once, not once per set size, and
    methods that do not rewind once, not once per rewind point)."""
    out = []
    points = sweep.grid_points()
    for data_name in sweep.datasets:
        data = sweep.data_spec(data_name)
        for model_name in sweep.models:
            model = sweep.model_spec(model_name)
            for method in sweep.methods:
                for ipc in sweep.set_sizes(method):
                    for rewind in sweep.rewind_choices(method):
                        for seed in sweep.seeds:
                            base = sweep.base
                            spec = base.replace(method=method, seed=seed, data=data, model=model,
                                                pruning=base.pruning.replace(rewind=rewind),
                                                distilled=base.distilled.replace(images_per_class=ipc),
                                                distilled_training=sweep.distilled_training(ipc))
                            out.extend(_on_grid(spec, points))
    return out


def _on_grid(spec: ExperimentSpec, points: list[dict]) -> list[ExperimentSpec]:
    """``spec`` at every grid point (its fields set, the keys it depends on kept as its label); ``spec`` itself
    without a grid. Points that differ only in keys it does not depend on (a distilled-set setting for IMP) are
    one experiment."""
    if points == [{}]:
        return [spec]
    identity = spec.identity_dict()
    relevant = [key for key in points[0] if _holds(identity, key)]
    out, labels, ids = [], set(), set()
    for point in points:
        label = {key: point[key] for key in relevant}
        if repr(label) in labels:  # another point already made it
            continue
        labels.add(repr(label))
        try:
            at = spec.with_values(point)
        except SpecError as error:
            raise SpecError(f"grid ({spec.method}, {spec.data.partition_name}, {spec.model.name})",
                            error.message) from None
        if at.experiment_id not in ids:  # values a field takes alike (1 and 1.0)
            ids.add(at.experiment_id)
            out.append(at.replace(grid=Table.of(label, "grid") if label else None))
    return out


def _holds(identity: dict, key: str) -> bool:
    """Whether the dotted ``key`` is part of an experiment's ``identity`` (IMP's has no distilled settings)."""
    node = identity
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def expand(sweep: SweepSpec) -> list[Job]:
    """The sweep's jobs, each after the jobs it depends on."""
    planner = Planner(sweep)
    kinds = [get_kind(name) for name in kind_names()]
    for spec in experiments(sweep):
        for kind in kinds:
            if kind.scope == "experiment":
                kind.plan(planner, spec)
    for kind in kinds:
        if kind.scope == "sweep":
            kind.plan(planner, None)
    order = {name: i for i, name in enumerate(kind_names())}
    # Stable by kind, so every job comes after its dependencies (kinds only depend on earlier kinds).
    return sorted(planner.jobs.values(), key=lambda job: order[job.kind])
