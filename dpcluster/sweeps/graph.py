"""The job graph of a sweep, in dependency order, with stable ids (content hashes of what each job computes).

1. ``distill``: one per data set × model × images per class, for the methods that use a distilled set;
2. ``mask``: the sequential pruning rounds of one method × seed (checkpointed per round);
3. ``validate``: one per method × seed × validated round: train that round's subnetwork on real data — the
   expensive part of distilled pruning, and independent across levels, so it fans out;
4. ``aggregate``: one, after everything.

``dense`` has no mask search: its single validation (round 0) trains the unpruned network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dpcluster.hashing import stable_hash
from dpcluster.methods.registry import get_method
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.spec import SweepSpec

KINDS = ("distill", "mask", "validate", "aggregate")


@dataclass(frozen=True)
class Job:
    kind: str
    id: str
    # The experiment this job belongs to (None for aggregation); for distill jobs, the one that first needs the set.
    experiment: ExperimentSpec | None
    round: int | None = None
    deps: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        if self.kind == "aggregate":
            return "aggregate"
        spec = self.experiment
        if self.kind == "distill":
            return f"distill-{spec.distilled.source}-{spec.data.name}-{spec.model.name}-ipc{spec.distilled.images_per_class}"
        suffix = f"-r{self.round}" if self.kind == "validate" else ""
        return f"{self.kind}-{spec.method}-s{spec.seed}-{spec.data.name}-{spec.model.name}{suffix}"


def _job_id(kind: str, payload: dict) -> str:
    return f"{kind}-{stable_hash({'kind': kind, **payload}, 12)}"


def experiments(sweep: SweepSpec) -> list[ExperimentSpec]:
    """Every experiment of the sweep (methods that use no distilled set appear once, not once per set size)."""
    out = []
    for data_name in sweep.datasets:
        data = sweep.data_spec(data_name)
        for model_name in sweep.models:
            model = sweep.model_spec(model_name)
            for method in sweep.methods:
                uses_set = get_method(method).uses_distilled_set
                for ipc in sweep.images_per_class if uses_set else sweep.images_per_class[:1]:
                    for seed in sweep.seeds:
                        base = sweep.base
                        out.append(base.replace(method=method, seed=seed, data=data, model=model,
                                                distilled=base.distilled.replace(images_per_class=ipc),
                                                distilled_training=sweep.distilled_training(ipc)))
    return out


def distill_id(spec: ExperimentSpec) -> str:
    return _job_id("distill", {"distilled": spec.distilled.identity_dict(), "data": spec.data.identity_dict(),
                               "model": spec.model.identity_dict()})


def expand(sweep: SweepSpec) -> list[Job]:
    """The sweep's jobs, each after the jobs it depends on."""
    jobs: dict[str, Job] = {}
    distills, masks, validations = [], [], []
    rounds = sweep.rounds()
    for spec in experiments(sweep):
        deps: tuple[str, ...] = ()
        if spec.uses_distilled_set and spec.distilled.source != "file":
            job = Job("distill", distill_id(spec), spec)
            if job.id not in jobs:
                jobs[job.id] = job
                distills.append(job)
            deps = (job.id,)
        if not get_method(spec.method).prunes:
            validations.append(Job("validate", _job_id("validate", {"experiment": spec.experiment_id, "round": 0}),
                                   spec, 0, deps))
            continue
        mask = Job("mask", _job_id("mask", {"experiment": spec.experiment_id}), spec, None, deps)
        masks.append(mask)
        for r in rounds:
            validations.append(Job("validate", _job_id("validate", {"experiment": spec.experiment_id, "round": r}),
                                   spec, r, (mask.id,)))
    everything = distills + masks + validations
    aggregate = Job("aggregate", _job_id("aggregate", {"jobs": sorted(j.id for j in everything)}), None,
                    deps=tuple(j.id for j in validations))
    return everything + [aggregate]
