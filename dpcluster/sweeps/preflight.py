"""Checks of a sweep against its data, models and distilled-set files, before anything is written: a data root
that is not there, a layer to ignore that the model lacks, a rewind point past the end of training, a set file
that is missing or of the wrong size. Each mistake is one UserError line."""

from __future__ import annotations

from collections.abc import Callable

from dpcluster.methods.engine import Inputs, check_experiment
from dpcluster.sweeps.graph import experiments
from dpcluster.sweeps.spec import SweepSpec


def preflight(sweep: SweepSpec, say: Callable[[str], None] = lambda text: None) -> None:
    import torch

    from dpcluster.data import load_data
    from dpcluster.distilled import obtain_distilled_set

    loaded: dict = {}
    read_sets: set = set()
    for spec in experiments(sweep):
        if spec.data not in loaded:
            say(f"Loading {spec.data.name} ...")
            loaded[spec.data] = load_data(spec.data)
        data = loaded[spec.data]
        check_experiment(spec, Inputs(data))
        if spec.uses_distilled_set and spec.distilled.from_file and spec.distilled not in read_sets:
            # Reading a set file writes nothing (only distilled sets go to the cache).
            obtain_distilled_set(spec.distilled, data, spec.model, "", torch.device("cpu"))
            read_sets.add(spec.distilled)
