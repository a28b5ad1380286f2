"""Where everything of a sweep lives in its folder; the only module that knows the folder's layout.

    SWEEP/sweep.toml                      the spec last run into the folder
    SWEEP/manifest.json                   every job ever planned here, its state and attempts (a snapshot)
    SWEEP/manifest.journal                the changes of states since that snapshot, one line each
    SWEEP/coordinator.lock                held by the one process that changes states and submits
    SWEEP/feeder.json                     the Slurm job that submits what did not fit in the queue yet
    SWEEP/distilled/                      distilled sets, cached by content
    SWEEP/masks/<experiment>/             each mask search: its initial weights, masks, rewind state, checkpoint and
                                          round records, and its levels' trained networks (trained/round-NNN.pt;
                                          the dense network's too), kept where the sweep keeps them
    SWEEP/results/dataset=/model=/method=/<job id>.parquet   one file per validated level (dataset=: data.label or name)
    SWEEP/analyses/<analysis>/dataset=/model=/method=/<job id>.parquet   the analyses' rows, one file per level
    SWEEP/analyses/pairs/<experiment>/round-NNN.pt   two copies of a level's subnetwork, trained for the analyses
    SWEEP/aggregate.parquet               mean, std and count per level, for the spec last run
    SWEEP/set_evaluations/<id>.parquet    evaluations of distilled sets on their own (evaluate-set, distill)
    SWEEP/tracking.json                   the trackers every job of the folder reports to (--track)
    SWEEP/progress/<job id>/              a training's per-epoch progress while it runs
    SWEEP/logs/                           one log per job (Slurm: submitit's folders, one per task, and outcomes/)
    SWEEP/code/<time>/                    the code Slurm jobs run, copied at submission (``--snapshot``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dpcluster.results.paths import level_file
from dpcluster.specs import ExperimentSpec


@dataclass(frozen=True)
class SweepLayout:
    root: Path

    @property
    def spec_file(self) -> Path:
        return self.root / "sweep.toml"

    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def distilled_cache(self) -> Path:
        return self.root / "distilled"

    @property
    def set_evaluations_dir(self) -> Path:
        return self.root / "set_evaluations"

    @property
    def tracking_file(self) -> Path:
        return self.root / "tracking.json"

    @property
    def cancel_file(self) -> Path:
        """Left by ``dpcluster cancel``: a coordinator still running submits nothing more; the next run removes
        it."""
        return self.root / "cancelled"

    @property
    def feeder_file(self) -> Path:
        """The Slurm feeder job queued to submit what did not fit in the queue (its id and interval)."""
        return self.root / "feeder.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def aggregate_file(self) -> Path:
        return self.root / "aggregate.parquet"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def snapshot_dir(self, stamp: str) -> Path:
        """A copy of the code made at submission, for the jobs submitted then."""
        return self.root / "code" / stamp

    def search_dir(self, spec: ExperimentSpec) -> Path:
        """One experiment's mask search (experiment names carry their content hash)."""
        return self.root / "masks" / spec.name

    def result_file(self, spec: ExperimentSpec, name: str) -> Path:
        """A validated level of ``spec``, named by the job that validated it."""
        return level_file(self.results_dir, spec.data.partition_name, spec.model.name, spec.method, name)

    @property
    def analyses_dir(self) -> Path:
        return self.root / "analyses"

    def analysis_dir(self, kind: str) -> Path:
        return self.analyses_dir / kind

    def analysis_file(self, kind: str, spec: ExperimentSpec, name: str) -> Path:
        return level_file(self.analysis_dir(kind), spec.data.partition_name, spec.model.name, spec.method, name)

    def pair_file(self, spec: ExperimentSpec, round_index: int) -> Path:
        return self.analyses_dir / "pairs" / spec.name / f"round-{round_index:03d}.pt"

    def trained_file(self, spec: ExperimentSpec, round_index: int) -> Path:
        """A level's network as its validation trained it, kept where the sweep keeps trained networks or the
        level's pair analyses start from it (as copy a)."""
        from dpcluster.methods.run_files import trained_path

        return trained_path(self.search_dir(spec), round_index)

    def progress_dir(self, job_id: str) -> Path:
        """Where a job's trainings keep their per-epoch progress (removed as each training ends)."""
        return self.root / "progress" / job_id

    def log_file(self, job_name: str) -> Path:
        return self.logs_dir / f"{job_name}.log"
