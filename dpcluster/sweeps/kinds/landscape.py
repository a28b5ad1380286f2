"""``landscape``: the loss-landscape plane around a level's trained subnetwork (copy a), spanned by two
filter-normalised random directions restricted to its mask (Li et al.), on a grid."""

from __future__ import annotations

import torch

from dpcluster.analyses.interpolation import has_batchnorm, recompute_batchnorm
from dpcluster.analyses.landscape import filter_normalised_direction, grid, plane
from dpcluster.results.analyses import write_analysis
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, register
from dpcluster.sweeps.kinds.analysis_common import build, label, level_columns, level_key, load_pair, subset, wants
from dpcluster.sweeps.kinds.mask import levels


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    if not wants(planner, "landscape"):
        return
    settings = planner.sweep.analysis
    for r in levels(planner, spec)[0]:
        pair = planner.find("pair", spec, r)
        planner.add("landscape", level_key(spec, r, size=settings.grid_size, span=settings.grid_span,
                                           test_examples=settings.test_examples,
                                           batchnorm_examples=settings.batchnorm_examples),
                    spec, r, (pair.id,), settings)


def run(job: Job, context) -> None:
    spec, layout, settings = job.experiment, context.layout, job.settings
    path = layout.analysis_file("landscape", spec, job.id)
    if path.exists():
        return
    inputs = context.inputs(spec)
    pair = load_pair(layout.pair_file(spec, job.round))
    model = build(spec, inputs, context.device)
    params = {name: pair.a[name] for name, _ in model.named_parameters()}
    generator = torch.Generator().manual_seed(spec.seed)
    directions = (filter_normalised_direction(params, pair.mask, generator),
                  filter_normalised_direction(params, pair.mask, generator))
    batchnorm_data = subset(inputs.data.train, settings.batchnorm_examples)
    recompute = (lambda m: recompute_batchnorm(m, batchnorm_data, context.device)) if has_batchnorm(model) else None
    rows = plane(model, pair.a, pair.mask, directions, grid(settings.grid_size, settings.grid_span),
                 subset(inputs.data.test, settings.test_examples), device=context.device,
                 recompute_batchnorm=recompute)
    write_analysis("landscape", level_columns(spec, job.round, pair.mask),
                   [{"a": a, "b": b, "test_loss": loss, "test_accuracy": accuracy} for a, b, loss, accuracy in rows],
                   path)


LANDSCAPE = register(JobKind("landscape", "the loss plane around a level's trained subnetwork", plan, label,
                             run=run, analysis=True))
