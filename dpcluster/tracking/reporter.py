"""The engine's hooks as tracker metrics. A run is one level of one experiment, named
``<method>-s<seed>-<experiment id>-r<round>``; its metrics are each training's per-epoch ``<phase>/loss``,
``<phase>/accuracy`` and ``<phase>/lr`` (phase: ``real_inner_loop``, ``distilled_inner_loop``, ``validation``,
``dense``, ``copy_a``, ...; step: the epoch) and the level's ``level/test_accuracy``, ``level/sparsity``, ``level/mask_search_seconds`` and
``level/time_to_mask_seconds`` (step: the round). A distillation is a run of its own, ``distill/loss`` at each
iteration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dpcluster.methods.reporter import Reporter, Training
from dpcluster.results.records import RoundRecord
from dpcluster.tracking.registry import Sink
from dpcluster.training.hooks import EpochEnd, EpochHook


def level_run(method: str, seed: int, experiment_id: str, round_index: int) -> str:
    return f"{method}-s{seed}-{experiment_id}-r{round_index}"


class TrackingReporter(Reporter):
    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def _log(self, run: str, metrics: dict, step: int) -> None:
        for sink in self.sinks:
            sink.log(run, metrics, step)

    def start_training(self, training: Training) -> EpochHook:
        spec = training.experiment
        run = level_run(spec.method, spec.seed, spec.experiment_id, training.round)
        phase = training.phase.replace(" ", "_")  # a metric name every tracker takes: real_inner_loop/loss

        def on_epoch(end: EpochEnd) -> None:
            self._log(run, {f"{phase}/loss": end.loss, f"{phase}/accuracy": end.accuracy, f"{phase}/lr": end.lr},
                      end.epoch)

        return on_epoch

    def _level(self, record: RoundRecord) -> None:
        metrics = {"level/sparsity": record.sparsity, "level/mask_search_seconds": record.mask_search_seconds}
        for key, value in (("level/test_accuracy", record.test_accuracy),
                           ("level/time_to_mask_seconds", record.time_to_mask_seconds)):
            if value is not None:
                metrics[key] = value
        self._log(level_run(record.method, record.seed, record.experiment_id, record.round), metrics, record.round)

    def end_round(self, record: RoundRecord) -> None:
        self._level(record)

    def end_validation(self, record: RoundRecord) -> None:
        self._level(record)

    def distilling(self, name: str, iteration: int, iterations: int, loss: float) -> None:
        self._log(name, {"distill/loss": loss}, iteration)

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


@contextmanager
def folder_tracking(folder: Path, reports: bool = True) -> Iterator[TrackingReporter | None]:
    """The trackers a sweep or search folder's ``tracking.json`` names, opened here for one job or trial and
    closed after it; None where it names none or this process does not report (``reports``: a data-parallel
    job's other ranks). Its runs go to a project named after the folder."""
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.tracking.registry import open_sinks, read_tracks

    tracks = read_tracks(SweepLayout(Path(folder)).tracking_file) if reports else []
    tracking = TrackingReporter(open_sinks(tracks, Path(folder).resolve().name)) if tracks else None
    try:
        yield tracking
    finally:
        if tracking is not None:
            tracking.close()
