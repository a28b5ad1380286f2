"""``sharpness``: the Hessian of the training loss at a level's trained subnetwork (copy a), over its unpruned
weights only, on a fixed subset of the training data: top eigenvalue by power iteration and trace by Hutchinson's
estimator (the second paper: distilled pruning discards the parameters that make the landscape sharp)."""

from __future__ import annotations

from dataclasses import asdict

from dpcluster.analyses.hessian import sharpness
from dpcluster.pruning.model_masks import restore_state
from dpcluster.results.analyses import write_analysis
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, register
from dpcluster.sweeps.kinds.analysis_common import build, label, level_columns, level_key, load_pair, subset, wants
from dpcluster.sweeps.kinds.mask import levels


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not wants(planner, "sharpness"):
        return
    s = planner.sweep.analysis
    for r in levels(planner, spec)[0]:
        pair = planner.find("pair", spec, r)
        planner.add("sharpness", level_key(spec, r, examples=s.hessian_examples, iterations=s.hessian_iterations,
                                           tolerance=s.hessian_tolerance, samples=s.hutchinson_samples),
                    spec, r, (pair.id,), s)


def run(job: Job, context) -> None:
    spec, layout, settings = job.experiment, context.layout, job.settings
    path = layout.analysis_file("sharpness", spec, job.id)
    if path.exists():
        return
    inputs = context.inputs(spec)
    pair = load_pair(layout.pair_file(spec, job.round))
    model = build(spec, inputs, context.device)
    restore_state(model, pair.a)
    data = subset(inputs.data.train, settings.hessian_examples)
    measured = sharpness(model, pair.mask, data, device=context.device, iterations=settings.hessian_iterations,
                         tolerance=settings.hessian_tolerance, samples=settings.hutchinson_samples, seed=spec.seed)
    write_analysis("sharpness", level_columns(spec, job.round, pair.mask),
                   [{**asdict(measured), "examples": len(data)}], path)


SHARPNESS = register(JobKind("sharpness", "top Hessian eigenvalue and trace at a level's trained subnetwork", plan,
                             label, run=run, analysis=True))
