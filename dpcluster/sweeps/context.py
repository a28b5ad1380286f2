"""What a job runs with: its sweep folder, device, process group and progress, and its inputs, loaded once per
process (a local sweep runs many jobs in one process, and a Ray worker runs many tasks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dpcluster.methods.engine import Inputs
from dpcluster.methods.reporter import Reporter
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.layout import SweepLayout
from dpcluster.training.distributed import Distributed

# Loaded data sets of this process, by spec and device, and the inputs made of them with a distilled set; a few
# at most, so memory stays bounded.
_LOADED: dict = {}
_WITH_SETS: dict = {}
_KEEP = 2


@dataclass
class JobContext:
    layout: SweepLayout
    device: torch.device
    distributed: Distributed | None = None
    reporter: Reporter = field(default_factory=Reporter)
    # Follows distillation: called with (iteration, iterations, loss).
    distill_progress: Callable[[int, int, float], None] | None = None

    @property
    def writes(self) -> bool:
        """Whether this process writes the job's outputs (every rank of a data-parallel job holds the same
        model; the first writes)."""
        return self.distributed is None or self.distributed.is_main

    def inputs(self, spec: ExperimentSpec) -> Inputs:
        """The experiment's data on its device, with its distilled set (distilled into the sweep's cache, or
        found there) when its method uses one."""
        from dpcluster.distilled import obtain_distilled_set

        data, placed = _load(spec, self.device)
        if not spec.uses_distilled_set:
            return Inputs(placed)
        # The set as read or distilled depends on these alone (MTT's expert trajectories on the model).
        key = (spec.distilled, spec.data, spec.model, str(self.device), str(self.layout.distilled_cache))
        if key not in _WITH_SETS:
            from dpcluster.sweeps.kinds.distill import set_name

            name = set_name(spec)  # the distill job's name: its run in the trackers

            def progress(iteration: int, iterations: int, loss: float) -> None:
                if self.distill_progress is not None:
                    self.distill_progress(iteration, iterations, loss)
                self.reporter.distilling(name, iteration, iterations, loss)

            distilled = obtain_distilled_set(spec.distilled, data, spec.model, self.layout.distilled_cache,
                                             self.device, progress=progress)
            inputs = Inputs.with_set(data, distilled)
            inputs = dataclasses.replace(inputs, data=placed, distilled=inputs.distilled.to(self.device))
            _keep(_WITH_SETS, key, inputs)
        return _WITH_SETS[key]


def _keep(cache: dict, key, value) -> None:
    while len(cache) >= _KEEP:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _load(spec: ExperimentSpec, device: torch.device):
    """The data set as loaded, and as placed on ``device``."""
    from dpcluster.data import load_data
    from dpcluster.runtime import place_data

    key = (spec.data, str(device))
    if key not in _LOADED:
        data = load_data(spec.data)
        _keep(_LOADED, key, (data, place_data(data, device, spec.data.placement)))
    return _LOADED[key]
