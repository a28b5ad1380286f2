"""``sharpness``: the Hessian of the training loss at a level's trained subnetwork (copy a), over its unpruned
weights only, on a fixed subset of the training data: its largest and smallest eigenvalues by Lanczos iteration and
its trace by Hutchinson's estimator (the second paper: distilled pruning discards the parameters that make the
landscape sharp)."""

from __future__ import annotations

from dataclasses import asdict

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import open_pair_level, pair_columns, plan_on_pairs, rows_present


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    s = planner.sweep.analysis
    # "eigen" names how the eigenvalues are found, so levels measured by the earlier power iteration (which could
    # report a wrong value as converged) are measured again rather than reused.
    plan_on_pairs(planner, spec, "sharpness", examples=s.hessian_examples, iterations=s.hessian_iterations,
                  tolerance=s.hessian_tolerance, samples=s.hutchinson_samples, eigen="lanczos",
                  subset="stratified", subset_seed=s.subset_seed)


def run(job: Job, context) -> None:
    from dpcluster.analyses.hessian import sharpness
    from dpcluster.data.base import measurement_subset
    from dpcluster.pruning.model_masks import restore_state
    from dpcluster.results.analyses import write_analysis

    level, settings = open_pair_level(job, context), job.settings
    if level is None:
        return
    restore_state(level.model, level.pair.a)
    data = measurement_subset(level.inputs.data.train, settings.hessian_examples, settings.subset_seed)
    measured = sharpness(level.model, level.pair.mask, data, device=context.device,
                         iterations=settings.hessian_iterations, tolerance=settings.hessian_tolerance,
                         samples=settings.hutchinson_samples, seed=job.experiment.seed)
    write_analysis("sharpness", pair_columns(job, level.pair),
                   [{**asdict(measured), "examples": len(data), "subset_seed": settings.subset_seed}], level.path)


SHARPNESS = register(JobKind("sharpness", "top Hessian eigenvalue and trace at a level's trained subnetwork", plan,
                             level_label, run=run, analysis=True, outputs_present=rows_present,
                             measures_pair=True))
