"""``landscape``: the loss-landscape plane around a level's trained subnetwork (copy a), spanned by two
filter-normalised random directions restricted to its mask (Li et al.), on a grid."""

from __future__ import annotations

from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.jobs import Job, JobKind, Planner, level_label, register
from dpcluster.sweeps.kinds.analysis_common import open_pair_level, pair_columns, plan_on_pairs, rows_present


def plan(planner: Planner, spec: ExperimentSpec) -> None:
    settings = planner.sweep.analysis
    plan_on_pairs(planner, spec, "landscape", size=settings.grid_size, span=settings.grid_span,
                  test_examples=settings.test_examples, split=settings.landscape_split, subset="stratified",
                  subset_seed=settings.subset_seed,
                  # BatchNorm is recomputed only for a plane of the test loss (the training loss keeps it as trained).
                  **({"batchnorm_examples": settings.batchnorm_examples} if settings.landscape_split == "test" else {}))


def run(job: Job, context) -> None:
    import torch

    from dpcluster.analyses.interpolation import has_batchnorm, recompute_batchnorm
    from dpcluster.analyses.landscape import filter_normalised_direction, grid, plane
    from dpcluster.data.base import measurement_subset
    from dpcluster.results.analyses import write_analysis

    level, settings = open_pair_level(job, context), job.settings
    if level is None:
        return
    model, pair, data = level.model, level.pair, level.inputs.data
    params = {name: pair.a[name] for name, _ in model.named_parameters()}
    generator = torch.Generator().manual_seed(job.experiment.seed)
    directions = (filter_normalised_direction(params, pair.mask, generator),
                  filter_normalised_direction(params, pair.mask, generator))
    seed, split = settings.subset_seed, settings.landscape_split
    # Li et al.'s planes: the training loss, BatchNorm's statistics as trained. Or the test loss, BatchNorm
    # recomputed at each displaced network (on training examples).
    measured = measurement_subset(data.train if split == "train" else data.test, settings.test_examples, seed)
    recompute, batchnorm_size = None, 0
    if split == "test" and has_batchnorm(model):
        batchnorm = measurement_subset(data.train, settings.batchnorm_examples, seed)
        recompute, batchnorm_size = (lambda m: recompute_batchnorm(m, batchnorm, context.device)), len(batchnorm)
    rows = plane(model, pair.a, pair.mask, directions, grid(settings.grid_size, settings.grid_span), measured,
                 device=context.device, recompute_batchnorm=recompute)
    subsets = {"split": split, "subset_seed": seed, "test_size": len(measured), "batchnorm_size": batchnorm_size}
    write_analysis("landscape", pair_columns(job, pair),
                   [{"a": a, "b": b, "test_loss": loss, "test_accuracy": accuracy, **subsets}
                    for a, b, loss, accuracy in rows], level.path)


LANDSCAPE = register(JobKind("landscape", "the loss plane around a level's trained subnetwork", plan, level_label,
                             run=run, analysis=True, outputs_present=rows_present, measures_pair=True))
