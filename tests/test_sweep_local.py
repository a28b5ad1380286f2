"""Sweeps on the local backend: every level validated once, resuming after a kill, retries, aggregation."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch

from dpcluster.cli.main import main
from dpcluster.data import load_data
from dpcluster.methods.engine import Inputs, run_experiment, validate_round
from dpcluster.specs import DataSpec, ExperimentSpec, ModelSpec, PruningSpec, TrainingSpec
from dpcluster.sweeps import execute as execute_module
from dpcluster.sweeps.backends import LocalBackend
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.layout import SweepLayout
from dpcluster.sweeps.manifest import Manifest
from dpcluster.sweeps.spec import SweepSpec

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY = {
    "name": "tiny", "methods": ["dense", "imp", "distilled", "random"], "seeds": [0, 1],
    "sparsities": [0.2, 0.36], "images_per_class": [2],
    "base": {"model": {"width": 8}, "pruning": {"rounds": 2}, "training": {"epochs": 2},
             "distilled": {"dm": {"iterations": 3}},
             "distilled_training": {"epochs": 3, "augmentation": "auto"}},
}


def rows(sweep_dir):
    return ds.dataset(sweep_dir / "results", format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.mark.parametrize("method", ["imp", "random"])
def test_a_level_validated_on_its_own_equals_the_engine_s_validation(tmp_path, method):
    spec = ExperimentSpec(method=method, model=ModelSpec(width=8), pruning=PruningSpec(rounds=3, rewind="1ep"),
                          training=TrainingSpec(epochs=3))
    inputs = Inputs(load_data(DataSpec()))
    in_run = run_experiment(spec, inputs, tmp_path / "a", CPU)
    searched = run_experiment(spec, inputs, tmp_path / "b", CPU, keep_masks=True, validate=False)
    # Without validation, the search still records what it trained anyway: IMP's validations are its inner loops.
    trained_anyway = [r.round for r in searched if r.test_accuracy is not None]
    assert trained_anyway == ([1, 2] if method == "imp" else [])
    for record in in_run:
        alone = validate_round(spec, inputs, tmp_path / "b", record.round, CPU)
        assert alone.mask_hash == record.mask_hash
        assert alone.test_accuracy == record.test_accuracy and alone.test_loss == record.test_loss


def test_local_sweep_validates_every_level_once_and_aggregates(tmp_path):
    sweep = SweepSpec.from_dict(TINY)
    manifest = run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values())
    results = rows(tmp_path)
    keys = sorted((r["method"], r["seed"], r["round"]) for r in results)
    expected = sorted([("dense", s, 0) for s in (0, 1)] +
                      [(m, s, r) for m in ("imp", "distilled", "random") for s in (0, 1) for r in (1, 2)])
    assert keys == expected
    assert all(r["sparsity"] == pytest.approx(0.36, abs=1e-3) for r in results if r["round"] == 2)
    assert all(r["images_per_class"] == (2 if r["method"] == "distilled" else 0) for r in results)
    summary = ds.dataset(tmp_path / "aggregate.parquet").to_table().to_pylist()
    assert len(summary) == 7 and all(row["test_accuracy_count"] == 2 for row in summary)
    # Running again does nothing new.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}
    run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}


def test_failed_jobs_are_retried_up_to_the_limit(tmp_path, monkeypatch):
    sweep = SweepSpec.from_dict({**TINY, "methods": ["random"], "seeds": [0], "max_retries": 1})
    real = execute_module.execute
    failures = {"left": 5}

    def flaky(call, *args):
        if call.job.kind == "validate" and call.job.round == 2 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("node lost")
        return real(call, *args)

    monkeypatch.setattr("dpcluster.sweeps.execute.execute", flaky)
    manifest = run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    failed = [s for s in manifest.jobs.values() if s.state == "failed"]
    assert len(failed) == 1 and failed[0].attempts == 2 and "node lost" in failed[0].error
    assert "RuntimeError: node lost" in (tmp_path / "logs" / f"{failed[0].name}.log").read_text()
    assert manifest.jobs and any(s.kind == "aggregate" and s.state == "pending" for s in manifest.jobs.values())
    # The limit holds across runs; lifting it lets the job finish.
    run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    assert Manifest.open(SweepLayout(tmp_path).manifest_file).jobs[next(j for j, s in manifest.jobs.items()
                                                            if s.state == "failed")].attempts == 2
    failures["left"] = 0
    manifest = run_sweep(sweep.replace(max_retries=3), tmp_path / "again", LocalBackend(), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values())


def _kill_sweep_when(sweep, tmp_path, ready, settle: float = 0.0):
    """Run ``dpcluster sweep`` in a process of its own, SIGKILL it once ``ready(out)`` holds (after ``settle``
    seconds more), and return the command (to run it again) and its folder."""
    path = tmp_path / "sweep.toml"
    sweep.save(path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dpcluster", "sweep", str(path), "--out", str(out), "--device", "cpu"]
    # Progress after every epoch, however short (by default a training saves every 30 s).
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPCLUSTER_PROGRESS_SECONDS": "0"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ready(out):
        assert process.poll() is None, "the sweep ended before the kill"
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(settle)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return command, env, out


def _any(folder, pattern):
    return folder.exists() and bool(list(folder.glob(pattern)))


def test_a_killed_sweep_resumes_and_writes_every_row_exactly_once(tmp_path):
    spec = dict(TINY, methods=["imp", "random"], base={**TINY["base"], "model": {"width": 32},
                                                     "training": {"epochs": 8}, "pruning": {"rounds": 3}},
                sparsities=[0.2, 0.36, 0.488])
    # Kill it in the middle of a mask search, after its first round's checkpoint.
    command, env, out = _kill_sweep_when(SweepSpec.from_dict(spec), tmp_path,
                                         lambda out: _any(out / "masks", "*/checkpoint.pt"))
    assert not (out / "results").exists() or not list((out / "results").rglob("*.parquet"))
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    keys = [(r["method"], r["seed"], r["round"]) for r in rows(out)]
    assert sorted(keys) == sorted((m, s, r) for m in ("imp", "random") for s in (0, 1) for r in (1, 2, 3))
    assert len(keys) == len(set(keys))


def test_sweep_mistakes_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nmethods = ["imp", "nope"]\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "methods[1]" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert main(["aggregate", str(tmp_path)]) == 2


def test_results_written_before_a_column_existed_read_with_nulls(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dpcluster.results import LayerCount, RoundRecord
    from dpcluster.results.levels import write_level
    from dpcluster.sweeps.aggregate import aggregate, read_results

    spec = ExperimentSpec(method="imp", seed=1)
    record = RoundRecord(
        experiment_id=spec.experiment_id, method="imp", seed=1, dataset="digits", model="convnet", round=1,
        sparsity=0.2, weights_kept=8, weights_total=10, test_accuracy=0.9, test_loss=0.3, inner_data="real",
        inner_seconds=1.0, inner_examples=100, validation_seconds=1.0, validation_examples=100,
        mask_search_seconds=1.0, mask_search_examples=100, time_to_mask_seconds=2.0, time_to_mask_examples=200,
        mask_hash="x", layers=(LayerCount("a.weight", 8, 10),))
    folder = tmp_path / "results" / "dataset=digits" / "model=convnet" / "method=imp"
    write_level(record, 0, folder / "b-new.parquet")
    # A file from before the cost and per-layer columns existed, found first by name.
    old = pa.table({"experiment_id": ["old"], "seed": [0], "round": [1], "sparsity": [0.2],
                    "test_accuracy": [0.8], "images_per_class": [0]})
    pq.write_table(old, folder / "a-old.parquet")
    table = read_results(tmp_path)
    rows = {row["experiment_id"]: row for row in table.to_pylist()}
    assert rows["old"]["time_to_mask_seconds"] is None and rows["old"]["layers"] is None
    assert rows[spec.experiment_id]["time_to_mask_seconds"] == 2.0
    assert rows[spec.experiment_id]["layers"] == [{"name": "a.weight", "kept": 8, "total": 10}]
    assert table.schema.field("method").type == pa.string() and rows["old"]["method"] == "imp"
    summary = aggregate(tmp_path).to_pylist()
    assert summary[0]["test_accuracy_count"] == 2 and summary[0]["time_to_mask_seconds_mean"] == 2.0


CHEAP = {"name": "cheap", "methods": ["dense", "random"], "seeds": [0], "sparsities": [0.2],
         "base": {"model": {"width": 8}, "pruning": {"rounds": 2}, "training": {"epochs": 1}}}


def test_a_folder_takes_more_seeds_and_levels_and_reuses_every_finished_job(tmp_path):
    first = SweepSpec.from_dict(CHEAP)
    run_sweep(first, tmp_path, LocalBackend(), "cpu")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}
    assert len(before) == 2
    ran = []
    extended = SweepSpec.from_dict({**CHEAP, "seeds": [0, 1], "sparsities": [0.2, 0.36]})
    manifest = run_sweep(extended, tmp_path, LocalBackend(on_start=lambda job: ran.append(job.name)), "cpu")
    assert all(manifest.jobs[job.id].state == "done" for job in expand(extended))
    # Only the new seed's jobs and the new level ran; the first run's files are untouched.
    assert sorted(ran) == sorted(["validate-dense-s1-digits-convnet-r0", "mask-random-s1-digits-convnet",
                                  "validate-random-s1-digits-convnet-r1", "validate-random-s1-digits-convnet-r2",
                                  "validate-random-s0-digits-convnet-r2"])
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}
    assert len(after) == 6 and all(after[p] == t for p, t in before.items())
    summary = ds.dataset(tmp_path / "aggregate.parquet").to_table().to_pylist()
    assert sorted((r["method"], r["test_accuracy_count"]) for r in summary) == [
        ("dense", 2), ("random", 2), ("random", 2)]
    assert SweepSpec.load(tmp_path / "sweep.toml") == extended


def test_a_changed_setting_makes_new_jobs_beside_the_old_ones(tmp_path):
    run_sweep(SweepSpec.from_dict(CHEAP), tmp_path, LocalBackend(), "cpu")
    longer = SweepSpec.from_dict({**CHEAP, "base": {**CHEAP["base"], "training": {"epochs": 2}}})
    ran = []
    run_sweep(longer, tmp_path, LocalBackend(on_start=lambda job: ran.append(job.kind)), "cpu")
    assert sorted(ran) == ["mask", "validate", "validate"]  # everything again: every result depends on epochs
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 4
    # The aggregate is the current spec's alone: one result per level, not the two settings mixed.
    summary = ds.dataset(tmp_path / "aggregate.parquet").to_table().to_pylist()
    assert sorted((r["method"], r["test_accuracy_count"]) for r in summary) == [("dense", 1), ("random", 1)]


class _HeldBackend:
    """Records submissions and ends jobs in the order ``finish_first`` prefers, without running them."""

    name = "held"
    resolves_dependencies = False

    def __init__(self, holds: str):
        self.holds, self.queue, self.log = holds, [], []

    def submit(self, call, after=()):
        self.queue.append(call)
        self.log.append(("submit", call.job.name))

    def outstanding(self):
        return len(self.queue)

    def wait(self):
        from dpcluster.sweeps.backends import Outcome

        # The held job ends only when nothing else is left.
        call = next((c for c in self.queue if self.holds not in c.job.name), self.queue[0])
        self.queue.remove(call)
        self.log.append(("end", call.job.name))
        return [Outcome(call.job.id, True)]


def test_a_job_starts_when_its_own_dependencies_are_done_not_its_stage(tmp_path):
    sweep = SweepSpec.from_dict({**CHEAP, "methods": ["imp", "random"]})
    backend = _HeldBackend(holds="mask-imp")
    run_sweep(sweep, tmp_path, backend, "cpu")
    log = backend.log
    imp_ends = log.index(("end", "mask-imp-0ep-s0-digits-convnet"))
    # random's validations were submitted and ended while IMP's mask search was still running.
    assert log.index(("submit", "validate-random-s0-digits-convnet-r1")) < imp_ends
    assert log.index(("end", "validate-random-s0-digits-convnet-r1")) < imp_ends
    assert log.index(("submit", "validate-imp-0ep-s0-digits-convnet-r1")) > imp_ends


def test_a_validation_killed_mid_training_resumes_there_with_the_same_result(tmp_path):
    spec = {"name": "long", "methods": ["dense"], "seeds": [0],
            "base": {"model": {"width": 32}, "training": {"epochs": 40}}}
    sweep = SweepSpec.from_dict(spec)
    # Kill it once the validation has written its progress after a few epochs.
    command, env, out = _kill_sweep_when(sweep, tmp_path, lambda out: _any(out / "progress", "*/*.pt"), 0.3)
    assert not list((out / "results").rglob("*.parquet")) if (out / "results").exists() else True
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    log = (out / "logs" / "validate-dense-s0-digits-convnet-r0.log").read_text()
    resumed = re.search(r"round 0: validation: resumed from its progress at step (\d+)", log)
    assert resumed and int(resumed.group(1)) > 0, log
    assert not list((out / "progress").rglob("*.pt")), "progress is removed once training ends"
    # The same numbers as a run that was never interrupted.
    alone = tmp_path / "alone"
    run_sweep(sweep, alone, LocalBackend(), "cpu")
    (killed,), (whole,) = rows(out), rows(alone)
    for key in ("test_accuracy", "test_loss", "validation_examples", "mask_hash"):
        assert killed[key] == whole[key], key
