"""Metrics streamed to the trackers (--track): TensorBoard's event files read back with TensorBoard's own reader,
an MLflow file store read back with mlflow.search_runs, W&B's offline run folders; each training's per-epoch loss
and accuracy, each level's accuracy as the results record it; the user's mistakes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dpcluster.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = ["run", "--methods", "imp", "--seeds", "0", "--rounds", "2", "--epochs", "2", "--device", "cpu"]


def levels(out) -> dict[int, dict]:
    return {row["round"]: row for row in pq.read_table(out / "results").to_pylist()}


def test_tensorboard_event_files_hold_every_epoch_and_every_level(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, board = tmp_path / "out", tmp_path / "board"
    assert main([*RUN, "--track", f"tensorboard:{board}", "--out", str(out)]) == 0
    rows = levels(out)
    experiment = rows[1]["experiment_id"]
    runs = {path.name: path for path in board.iterdir()}
    assert set(runs) == {f"imp-s0-{experiment}-r1", f"imp-s0-{experiment}-r2"}

    def scalars(run):
        events = EventAccumulator(str(runs[run])).Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    first = scalars(f"imp-s0-{experiment}-r1")
    # Round 1: the dense network's real inner loop (2 epochs), then its pruned subnetwork's validation.
    assert [step for step, _ in first["real_inner_loop/loss"]] == [1, 2]
    assert all(0 <= value <= 1 for _, value in first["real_inner_loop/accuracy"])
    assert [value for _, value in first["real_inner_loop/lr"]] == pytest.approx([0.05, 0.05])
    assert first["level/test_accuracy"] == [(1, pytest.approx(rows[1]["test_accuracy"]))]
    assert first["level/sparsity"] == [(1, pytest.approx(rows[1]["sparsity"]))]
    second = scalars(f"imp-s0-{experiment}-r2")
    assert second["level/test_accuracy"] == [(2, pytest.approx(rows[2]["test_accuracy"]))]
    assert second["level/time_to_mask_seconds"] == [(2, pytest.approx(rows[2]["time_to_mask_seconds"]))]
    # Kept in the folder for its later jobs, with the target made absolute.
    assert json.loads((out / "tracking.json").read_text()) == [{"name": "tensorboard", "target": str(board)}]


def test_mlflow_file_store_reads_back_with_search_runs(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "out"
    assert main([*RUN, "--track", "mlflow", "--out", str(out)]) == 0
    mlflow.set_tracking_uri((out / "mlruns").as_uri())
    found = mlflow.search_runs(experiment_names=["out"])
    rows = levels(out)
    names = set(found["tags.mlflow.runName"])
    assert names == {f"imp-s0-{rows[1]['experiment_id']}-r{r}" for r in (1, 2)}
    with_accuracy = found.dropna(subset=["metrics.level/test_accuracy"])
    assert sorted(with_accuracy["metrics.level/test_accuracy"]) == pytest.approx(
        sorted(row["test_accuracy"] for row in rows.values()))
    client = mlflow.tracking.MlflowClient()
    run = found[found["tags.mlflow.runName"].str.endswith("-r1")].dropna(
        subset=["metrics.real_inner_loop/loss"]).iloc[0]
    history = client.get_metric_history(run["run_id"], "real_inner_loop/loss")
    assert [m.step for m in history] == [1, 2]


def test_wandb_offline_writes_its_run_folders(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # not logged in: offline
    out = tmp_path / "tracked-sweep"  # the project's name
    assert main([*RUN, "--track", "wandb", "--out", str(out)]) == 0
    experiment = levels(out)[1]["experiment_id"]
    folders = sorted((out / "wandb" / "wandb").glob("offline-run-*"))
    assert len(folders) >= 2
    logged = b"".join(file.read_bytes() for folder in folders for file in folder.glob("run-*.wandb"))
    for text in (f"imp-s0-{experiment}-r1", f"imp-s0-{experiment}-r2", "real_inner_loop/loss",
                 "level/test_accuracy", "tracked-sweep"):
        assert text.encode() in logged, text


def test_track_mistakes_are_one_line_and_none_stops_tracking(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main([*RUN, "--track", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--track nope: unknown tracker 'nope'" in err and err.count("\n") == 1 and not out.exists()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main([*RUN, "--track", "mlflow", "--out", str(out)]) == 2
    assert "--track mlflow: needs the mlflow package" in capsys.readouterr().err and not out.exists()
    monkeypatch.undo()
    from dpcluster.tracking.registry import read_tracks, write_tracks, Track

    out.mkdir()
    write_tracks(out / "tracking.json", [Track("tensorboard", str(tmp_path / "tb"))])
    assert main([*RUN, "--track", "none", "--out", str(out)]) == 0
    assert read_tracks(out / "tracking.json") == [] and not (tmp_path / "tb").exists()


SEARCH = """
name = "tracked"
[objective]
kind = "distilled_accuracy"
[search]
samples = 1
scheduler = "fifo"
reports = 2
[space]
"distilled_training.lr" = { grid = [0.01, 0.05] }
[base]
method = "distilled"
[base.model]
width = 8
[base.distilled]
images_per_class = 2
[base.distilled.dm]
iterations = 2
[base.distilled_training]
epochs = 3
"""


def test_a_searchs_trials_report_to_the_trackers_from_their_ray_workers(tmp_path):
    """Each trial runs in a Ray worker process and opens the trackers there, from the search folder."""
    pytest.importorskip("tensorboard")
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec, out, board = tmp_path / "search.toml", tmp_path / "out", tmp_path / "board"
    spec.write_text(SEARCH)
    done = subprocess.run([sys.executable, "-m", "dpcluster", "tune", str(spec), "--out", str(out), "--device", "cpu",
                           "--track", f"tensorboard:{board}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = sorted(run for run in board.iterdir() if not run.name.startswith("distill-"))
    assert len(runs) == 2 and all(run.name.startswith("distilled-s0-") and run.name.endswith("-r0") for run in runs)
    # The set the trials share was distilled by them (by both, when they start together), its loss in a run of
    # its own.
    (distilled,) = [run for run in board.iterdir() if run.name.startswith("distill-")]
    assert {e.step for e in EventAccumulator(str(distilled)).Reload().Scalars("distill/loss")} == {1, 2}
    for run in runs:
        events = EventAccumulator(str(run)).Reload()
        assert [e.step for e in events.Scalars("trial/loss")] == [1, 2, 3]
    lrs = sorted(EventAccumulator(str(run)).Reload().Scalars("trial/lr")[0].value for run in runs)
    assert lrs == pytest.approx([0.01, 0.05])
