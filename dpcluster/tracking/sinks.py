"""The trackers' own code, each behind the same two calls (``log`` a run's metrics at a step, ``close``), imported
only when a job opens one. A job opens its sinks and closes them when it ends; runs keep their names across jobs
(a level's run gathers its mask search's inner loop and its validation, logged by two jobs)."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from dpcluster.tracking.registry import Track

# Runs a sink keeps open at once: a local sweep runs thousands of trainings in one process, each a run.
OPEN_RUNS = 8


class _Runs:
    """The sink's open runs by name, the least recently used closed beyond OPEN_RUNS."""

    def __init__(self, start, finish):
        self.start, self.finish, self.open = start, finish, OrderedDict()

    def __call__(self, name: str):
        if name in self.open:
            self.open.move_to_end(name)
        else:
            self.open[name] = self.start(name)
            while len(self.open) > OPEN_RUNS:
                self.finish(self.open.popitem(last=False)[1])
        return self.open[name]

    def close(self) -> None:
        while self.open:
            self.finish(self.open.popitem(last=False)[1])


class TensorBoardSink:
    """Event files in TARGET/<run>/ (a run opened again appends a new event file to its folder, which
    TensorBoard reads as one run)."""

    def __init__(self, track: Track, project: str):
        from torch.utils.tensorboard import SummaryWriter

        root = Path(track.target)
        self.runs = _Runs(lambda name: SummaryWriter(log_dir=str(root / name)), lambda writer: writer.close())

    def log(self, run: str, metrics: Mapping[str, float], step: int) -> None:
        writer = self.runs(run)
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.runs.close()


class MlflowSink:
    """Runs of the MLflow experiment named ``project``, at TARGET: a tracking URI, or a folder for a local file
    store (which MLflow keeps in maintenance mode; it suits many jobs writing at once, each its own run)."""

    def __init__(self, track: Track, project: str):
        from mlflow.tracking import MlflowClient

        uri = track.target if "://" in track.target else Path(track.target).as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment = self._experiment(project)
        self.runs = _Runs(lambda name: self.client.create_run(self.experiment, run_name=name).info.run_id,
                          lambda run_id: self.client.set_terminated(run_id))

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another job created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def log(self, run: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.runs(run), metrics=[Metric(key, float(value), now, step)
                                                        for key, value in metrics.items()])

    def close(self) -> None:
        self.runs.close()


def _logged_in() -> bool:
    """Whether Weights & Biases has credentials here (an API key in the environment or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class WandbSink:
    """Runs of the W&B project ``project``, their folders under TARGET; offline unless logged in (or WANDB_MODE
    says otherwise). W&B wants a step that only grows per run, so the step is logged as a metric of its own."""

    def __init__(self, track: Track, project: str):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        mode = os.environ.get("WANDB_MODE") or ("online" if _logged_in() else "offline")
        Path(track.target).mkdir(parents=True, exist_ok=True)
        self.runs = _Runs(lambda name: wandb.init(project=project, name=name, dir=track.target, mode=mode,
                                                  reinit="create_new"),
                          lambda run: run.finish())

    def log(self, run: str, metrics: Mapping[str, float], step: int) -> None:
        self.runs(run).log({**metrics, "step": step})

    def close(self) -> None:
        self.runs.close()
