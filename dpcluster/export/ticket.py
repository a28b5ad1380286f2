"""A level of a sweep (or run) folder as a ticket: its mask, the exact initial weights its search stored, the
rewind point's weights where its training starts there, its trained network, and its record; and picking the
level a user means (by method, seed and nearest sparsity, or by job)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpcluster.errors import UserError

if TYPE_CHECKING:
    import torch

    from dpcluster.results.records import RoundRecord
    from dpcluster.specs import ExperimentSpec
    from dpcluster.sweeps.jobs import Job


@dataclass(frozen=True)
class LevelChoice:
    """What picks a level; None: whatever the folder holds only one of."""

    method: str | None = None
    seed: int | None = None
    sparsity: float | None = None
    rewind: str | None = None
    images_per_class: int | None = None
    dataset: str | None = None
    model: str | None = None
    job: str | None = None


@dataclass(frozen=True)
class Ticket:
    spec: ExperimentSpec
    record: RoundRecord
    job_id: str
    job_name: str
    source: Path
    mask: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    # The rewind point's weights (unmasked, as stored) where the level's training starts there, else None.
    rewind: dict[str, torch.Tensor] | None
    trained: dict[str, torch.Tensor]
    # Where the level's training starts, in iterations of the real training set (0: initialisation).
    start_step: int
    steps_per_epoch: int

    @property
    def round(self) -> int:
        return self.record.round

    def states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The ticket's weights by name: init, rewind (where the level starts there) and trained."""
        return {"init": self.init, **({"rewind": self.rewind} if self.rewind is not None else {}),
                "trained": self.trained}

    def identity(self) -> dict:
        """The few facts that name the ticket (safetensors' metadata, the export's folder)."""
        r = self.record
        return {"experiment_id": r.experiment_id, "method": r.method, "seed": r.seed, "round": r.round,
                "sparsity": r.sparsity, "rewind": r.rewind, "images_per_class": self.spec.set_size,
                "test_accuracy": r.test_accuracy, "starts_from": "rewind" if self.rewind is not None else "init",
                "start_step": self.start_step}

    def description(self, formats: dict[str, list[str]]) -> dict:
        """``ticket.json``: what the ticket is, where it came from and how it was found."""
        import torch

        from dpcluster import __version__

        r = self.record
        return {
            **self.identity(), "dataset": r.dataset, "model": r.model, "test_loss": r.test_loss,
            "weights_kept": r.weights_kept, "weights_total": r.weights_total,
            "layers": [{"name": layer.name, "kept": layer.kept, "total": layer.total} for layer in r.layers],
            "steps_per_epoch": self.steps_per_epoch, "mask_hash": r.mask_hash,
            "mask_search_seconds": r.mask_search_seconds, "mask_search_examples": r.mask_search_examples,
            "time_to_mask_seconds": r.time_to_mask_seconds, "time_to_mask_examples": r.time_to_mask_examples,
            "world_size": r.world_size, "source": str(self.source), "job_id": self.job_id, "job": self.job_name,
            "spec": self.spec.to_dict(), "dpcluster": __version__, "torch": torch.__version__, "formats": formats,
        }


def _levels(folder: Path) -> list[Job]:
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.spec import SweepSpec

    layout = SweepLayout(folder)
    if not layout.spec_file.exists():
        raise UserError(f"{folder}: not a sweep or run folder (no {layout.spec_file.name})")
    return [job for job in expand(SweepSpec.load(layout.spec_file)) if job.kind == "validate"]


def _narrow(jobs: list[Job], flag: str, value, of) -> list[Job]:
    """The jobs whose ``of(job)`` is ``value``; with no value, all of them if they agree, else a mistake naming the
    choices."""
    present = sorted({of(job) for job in jobs}, key=lambda v: (v is None, str(v)))
    if value is None:
        if len(present) > 1:
            raise UserError(f"{flag}: the folder has levels of {', '.join(map(str, present))}; choose one")
        return jobs
    chosen = [job for job in jobs if of(job) == value]
    if not chosen:
        raise UserError(f"{flag} {value}: no such level here (the folder has {', '.join(map(str, present))})")
    return chosen


def pick_level(folder: Path, choice: LevelChoice) -> tuple[Job, str | None]:
    """The validation job of the level ``choice`` names, and a note when the sparsity asked for is not a level's
    exactly (the nearest is taken)."""
    jobs = _levels(folder)
    if choice.job is not None:
        found = [job for job in jobs if choice.job in (job.id, job.name)]
        if not found:
            raise UserError(f"--job {choice.job}: no level of this folder has that job id or name")
        return found[0], None
    jobs = _narrow(jobs, "--method", choice.method, lambda j: j.experiment.method)
    jobs = _narrow(jobs, "--dataset", choice.dataset, lambda j: j.experiment.data.partition_name)
    jobs = _narrow(jobs, "--model", choice.model, lambda j: j.experiment.model.name)
    jobs = _narrow(jobs, "--rewind", choice.rewind, lambda j: j.experiment.rewind_point_used)
    jobs = _narrow(jobs, "--ipc", choice.images_per_class, lambda j: j.experiment.set_size or None)
    jobs = _narrow(jobs, "--seed", choice.seed, lambda j: j.experiment.seed)
    from dpcluster.specs.experiment import sparsity_after

    rate = jobs[0].experiment.pruning.rate
    level_sparsity = {job.id: sparsity_after(job.round, rate) for job in jobs}
    if choice.sparsity is None:
        if len(jobs) > 1:
            levels = ", ".join(f"{100 * s:.1f}%" for s in sorted(level_sparsity.values()))
            raise UserError(f"--sparsity: the folder has levels at {levels}; choose one")
        return jobs[0], None
    if not 0 <= choice.sparsity < 1:
        raise UserError(f"--sparsity must be in [0, 1), got {choice.sparsity}")
    job = min(jobs, key=lambda j: (abs(level_sparsity[j.id] - choice.sparsity), j.round))
    reached = level_sparsity[job.id]
    note = None if math.isclose(reached, choice.sparsity, abs_tol=5e-4) else \
        f"no level at {100 * choice.sparsity:.1f}%: the nearest is {100 * reached:.1f}% (round {job.round})"
    return job, note


def load_ticket(folder: Path, job: Job) -> Ticket:
    """The level of ``job`` as a ticket; a mistake naming what is missing when the folder does not hold it all."""
    import torch

    from dpcluster.methods.engine import KeptTraining, StoredInit
    from dpcluster.methods.registry import get_method
    from dpcluster.methods.run_files import INIT_FILE, REWIND_FILE, mask_path
    from dpcluster.pruning.masks import unpack_mask
    from dpcluster.results.levels import level_records, read_levels
    from dpcluster.sweeps.layout import SweepLayout

    layout, spec = SweepLayout(folder), job.experiment
    records = level_records(read_levels(layout.results_dir, [job.id])) if layout.results_dir.exists() else []
    if not records:
        raise UserError(f"{job.name}: this level has not been validated yet; run the sweep to the end first")
    record = records[0]
    search = layout.search_dir(spec)
    if not (search / INIT_FILE).exists():
        raise UserError(f"{job.name}: no stored initial weights ({search / INIT_FILE}); the search ran with a "
                        f"dpcluster that did not store them: run it again in a new folder")
    trained = layout.trained_file(spec, job.round)
    if not trained.exists():
        raise UserError(f"{job.name}: no trained network was kept for this level ({trained}); the sweep ran with "
                        f"keep_trained = false")
    stored = StoredInit.load(search / INIT_FILE)
    if job.round:
        mask = unpack_mask(torch.load(mask_path(search, job.round), weights_only=True))
    else:
        mask = {layer.name: torch.ones_like(stored.state[layer.name]) for layer in record.layers}
    rewind = None
    starts_at_rewind = job.round and stored.rewind_step > 0 and \
        get_method(spec.method).validates_from_rewind(spec, record.sparsity)
    if starts_at_rewind:
        rewind = torch.load(search / REWIND_FILE, weights_only=True)
    return Ticket(spec, record, job.id, job.name, Path(folder).resolve(), mask, stored.state, rewind,
                  KeptTraining.load(trained).state, stored.rewind_step if starts_at_rewind else 0,
                  stored.steps_per_epoch)
