"""``pair``: two copies of a level's subnetwork trained on real data from where its validation starts, with
different data orders and augmentation draws; planned for every level a pair analysis (stability, landscape,
sharpness) measures, and kept in the sweep folder for them."""

from __future__ import annotations

from dpcluster.atomic import torch_save_atomic
from dpcluster.methods.engine import train_pair
from dpcluster.pruning.masks import pack_mask
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, register
from dpcluster.sweeps.kinds.analysis_common import PAIR_ANALYSES, label, level_key, wants
from dpcluster.sweeps.kinds.mask import levels


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not any(wants(planner, kind) for kind in PAIR_ANALYSES):
        return
    rounds, deps = levels(planner, spec)
    for r in rounds:
        planner.add("pair", level_key(spec, r), spec, r, deps)


def run(job: Job, context) -> None:
    spec, layout = job.experiment, context.layout
    path = layout.pair_file(spec, job.round)
    if path.exists():
        return
    search = layout.search_dir(spec) if job.round else None
    pair = train_pair(spec, context.inputs(spec), search, job.round, context.device, context.reporter,
                      progress_dir=layout.progress_dir(job.id))
    torch_save_atomic({"mask": pack_mask(pair.mask), "start": pair.start, "a": pair.a, "b": pair.b}, path)


PAIR = register(JobKind("pair", "train two copies of a level's subnetwork with different data orders", plan, label,
                        run=run))
