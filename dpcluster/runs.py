"""Running a list of experiments on this machine: check everything first, then run them one by one.

Every check that can fail on user input (spec, data root, model, ignored layers, rewind point, distilled set)
happens in :func:`plan_run`, before anything is written, so a mistake leaves no partial results behind.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dpcluster.data import load_data
from dpcluster.methods.engine import Inputs, check_experiment, run_experiment
from dpcluster.methods.registry import get_method
from dpcluster.methods.reporter import Reporter
from dpcluster.results.records import RoundRecord
from dpcluster.runtime import place_data, resolve_device
from dpcluster.specs import ExperimentSpec

DISTILLED_CACHE = "distilled"


@dataclass
class Plan:
    experiments: list[ExperimentSpec]
    inputs: dict[str, Inputs]  # by experiment id
    out: Path
    device: torch.device

    @property
    def total_rounds(self) -> int:
        return sum(max(s.pruning.num_rounds, 1) if get_method(s.method).prunes else 1 for s in self.experiments)


def plan_run(specs: list[ExperimentSpec], out: Path, device_name: str,
             say: Callable[[str], None] = lambda text: None, distill_progress=None) -> Plan:
    """Load and check everything the experiments need; ``distill_progress(i, n, loss)`` follows distillation."""
    device = resolve_device(device_name)
    loaded: dict = {}
    inputs: dict[str, Inputs] = {}
    for spec in specs:
        if spec.data not in loaded:
            say(f"Loading {spec.data.name} ...")
            loaded[spec.data] = load_data(spec.data)
        inputs[spec.experiment_id] = Inputs(loaded[spec.data])
        check_experiment(spec, inputs[spec.experiment_id])

    distilled_sets: dict = {}
    for spec in specs:
        if not spec.uses_distilled_set:
            continue
        key = (spec.distilled, spec.data, spec.model)
        if key not in distilled_sets:
            distilled_sets[key] = _distilled_set(spec, loaded[spec.data], out, device, say, distill_progress)
        distilled = distilled_sets[key]
        inputs[spec.experiment_id] = Inputs.with_set(loaded[spec.data], distilled)

    placed = {data_spec: place_data(bundle, device, data_spec.placement) for data_spec, bundle in loaded.items()}
    for spec in specs:
        item = inputs[spec.experiment_id]
        distilled = item.distilled.to(device) if item.distilled is not None else None
        inputs[spec.experiment_id] = dataclasses.replace(item, data=placed[spec.data], distilled=distilled)
    return Plan(specs, inputs, out, device)


def _distilled_set(spec: ExperimentSpec, data, out: Path, device: torch.device, say: Callable[[str], None],
                   progress):
    from dpcluster.distilled import obtain_distilled_set

    source = spec.distilled
    if source.source == "file":
        say(f"Distilled set: {source.set_path} ({source.format} format)")
    else:
        say(f"Distilled set: {source.source}, {source.images_per_class} images per class "
            f"(cached under {out / DISTILLED_CACHE})")
    # One set per data set and model, shared by every experiment seed, as in the papers.
    return obtain_distilled_set(source, data, spec.model, out / DISTILLED_CACHE, device, progress=progress)


def run_planned(plan: Plan, reporter: Reporter | None = None) -> list[RoundRecord]:
    records: list[RoundRecord] = []
    for spec in plan.experiments:
        records += run_experiment(spec, plan.inputs[spec.experiment_id], plan.out / spec.name, plan.device,
                                  reporter)
    return records
