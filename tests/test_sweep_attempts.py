"""A sweep never gets stuck: an attempt is counted only when a job really starts, only the job's own failure
uses one, retries are spaced, a job out of attempts runs again with --retry-failed, and a finished job whose
outputs are gone runs again. On the local backend and on the real local Slurm (slurm/cluster.sh)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpcluster.cli.main import main
from dpcluster.results.levels import read_levels
from dpcluster.sweeps import coordinator as coordinator_module
from dpcluster.sweeps import execute as execute_module
from dpcluster.sweeps.backends import LocalBackend
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.layout import SweepLayout
from dpcluster.sweeps.manifest import Manifest
from dpcluster.sweeps.spec import SweepSpec

REPO = Path(__file__).resolve().parents[1]
# Two validations that train long enough to be stopped in the middle (progress saved every epoch).
LONG = {"name": "long", "methods": ["dense"], "seeds": [0, 1],
        "base": {"model": {"width": 32}, "training": {"epochs": 30}}}
QUICK = {"name": "quick", "methods": ["dense", "random"], "seeds": [0], "sparsities": [0.2],
         "base": {"model": {"width": 8}, "pruning": {"rounds": 1}, "training": {"epochs": 1}}}


def _states(out: Path) -> dict:
    return Manifest.open(SweepLayout(out).manifest_file, read_only=True).jobs


def _levels(out: Path) -> list:
    return sorted((r["method"], r["seed"], r["round"]) for r in read_levels(out / "results").to_pylist())


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(coordinator_module, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(coordinator_module, "RETRY_MAX", 0.04)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl+C"])
def test_a_run_stopped_three_times_still_finishes_and_no_attempt_is_used(tmp_path, stop):
    spec = tmp_path / "long.toml"
    SweepSpec.from_dict(LONG).save(spec)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dpcluster", "sweep", str(spec), "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPCLUSTER_PROGRESS_SECONDS": "0"}
    for stopped in range(3):  # each time in the middle of a validation's training
        started = time.time()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = started + 300
        progress = out / "progress"

        def training() -> bool:  # this run has saved progress of its own (an earlier run's may be there too)
            return progress.exists() and any(p.stat().st_mtime > started for p in progress.glob("*/*.pt"))

        while not training():
            assert process.poll() is None, process.stderr.read()
            assert time.time() < deadline
            time.sleep(0.02)
        process.send_signal(stop)
        err = process.communicate(timeout=120)[1]
        if stop == signal.SIGINT:
            assert process.returncode == 130 and err.count("\n") == 1, err
            # Stopped with Ctrl+C, the run gives the attempt back at once.
            assert all(s.attempts == 0 for s in _states(out).values() if s.state != "done"), _states(out)
        # dpcluster status says the stopped run's job was interrupted, not that it is queued or running.
        status = subprocess.run([sys.executable, "-m", "dpcluster", "status", str(out)], env=env,
                                capture_output=True, text=True)
        if stop == signal.SIGKILL:
            assert "were interrupted" in status.stdout, status.stdout
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert _levels(out) == [("dense", 0, 0), ("dense", 1, 0)]
    # One attempt each (the aggregate is settled by the coordinator, never an attempt).
    assert all(s.state == "done" and s.attempts == (s.kind != "aggregate") for s in _states(out).values()), \
        _states(out)


def test_failures_are_retried_spaced_out_and_a_job_out_of_attempts_runs_again_with_retry_failed(
        tmp_path, monkeypatch, quick_retries, capsys):
    sweep = SweepSpec.from_dict({**QUICK, "methods": ["dense"], "max_retries": 3})
    real = execute_module.execute
    tried = []

    def broken(call, *args):
        if call.job.kind == "validate" and not fixed:
            tried.append(time.monotonic())
            raise RuntimeError("cannot validate")
        return real(call, *args)

    fixed = False
    monkeypatch.setattr(execute_module, "execute", broken)
    run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    # One attempt and max_retries retries in the run, each after a longer wait (0.01, 0.02, 0.04 s): no tight loop.
    assert len(tried) == 4
    gaps = [b - a for a, b in zip(tried, tried[1:])]
    assert all(gap >= wait * 0.9 for gap, wait in zip(gaps, (0.01, 0.02, 0.04))), gaps
    (state,) = [s for s in _states(tmp_path).values() if s.kind == "validate"]
    assert state.state == "failed" and state.attempts == 4
    # Out of attempts: the same command does not try it again, and says how to.
    spec = tmp_path / "quick.toml"
    sweep.save(spec)
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert len(tried) == 4
    printed = capsys.readouterr().out
    assert "failed on all 4 attempt(s)" in printed and "--retry-failed" in printed, printed
    assert main(["status", str(tmp_path)]) == 0
    assert "out of attempts: --retry-failed runs it again" in capsys.readouterr().out
    fixed = True
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--device", "cpu", "--retry-failed"]) == 0
    assert _levels(tmp_path) == [("dense", 0, 0)]
    (state,) = [s for s in _states(tmp_path).values() if s.kind == "validate"]
    assert state.state == "done" and state.attempts == 1


def test_a_full_disk_stops_the_run_in_one_line_and_uses_no_attempt(tmp_path, monkeypatch, capsys):
    import errno

    spec = tmp_path / "quick.toml"
    SweepSpec.from_dict({**QUICK, "methods": ["dense"]}).save(spec)
    real = execute_module.execute
    full = {"left": 1}

    def disk_full(call, *args):
        if call.job.kind == "validate" and full["left"]:
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results"))
        return real(call, *args)

    monkeypatch.setattr(execute_module, "execute", disk_full)
    command = ["sweep", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "nothing was left half-written" in err
    (state,) = [s for s in _states(tmp_path / "out").values() if s.kind == "validate"]
    assert state.state == "pending" and state.attempts == 0
    assert main(command) == 0  # room again: it runs, nothing was used up
    assert _levels(tmp_path / "out") == [("dense", 0, 0)]


def test_a_finished_level_whose_result_is_gone_runs_again_and_the_aggregate_with_it(tmp_path):
    import pyarrow.parquet as pq

    sweep = SweepSpec.from_dict(QUICK)
    run_sweep(sweep, tmp_path, LocalBackend(), "cpu")
    assert _levels(tmp_path) == [("dense", 0, 0), ("random", 0, 1)]
    (lost,) = [p for p in (tmp_path / "results").rglob("*.parquet") if "method=random" in str(p)]
    lost.unlink()
    ran = []
    run_sweep(sweep, tmp_path, LocalBackend(on_start=lambda job: ran.append(job.kind)), "cpu")
    # The level ran again (its mask search's masks are still there: it did not), and the aggregate after it.
    assert ran == ["validate"] and _levels(tmp_path) == [("dense", 0, 0), ("random", 0, 1)]
    assert pq.read_table(tmp_path / "aggregate.parquet").num_rows == 2
    # With the masks gone too, the search runs again before the level.
    layout = SweepLayout(tmp_path)
    mask = next(job for job in coordinator_module.expand(sweep) if job.kind == "mask")
    for path in (layout.search_dir(mask.experiment) / "masks").iterdir():
        path.unlink()
    next(p for p in (tmp_path / "results").rglob("*.parquet") if "method=random" in str(p)).unlink()
    ran.clear()
    run_sweep(sweep, tmp_path, LocalBackend(on_start=lambda job: ran.append(job.kind)), "cpu")
    assert ran == ["mask", "validate"] and _levels(tmp_path) == [("dense", 0, 0), ("random", 0, 1)]


# -- on the real Slurm -------------------------------------------------------------------------------------------


def _slurm_sweep(tmp_path, sweep: dict):
    spec = tmp_path / "sweep.toml"
    SweepSpec.from_dict(sweep).save(spec)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPCLUSTER_PROGRESS_SECONDS": "0"}
    command = [sys.executable, "-m", "dpcluster", "sweep", str(spec), "--backend", "slurm", "--out", str(out),
               "--device", "cpu", "--time-min", "10"]
    return command, env, out


def test_slurm_refusals_and_cancellations_use_no_attempt(slurm_cluster, tmp_path):
    command, env, out = _slurm_sweep(tmp_path, {**QUICK, "base": {**QUICK["base"], "training": {"epochs": 60},
                                                                 "model": {"width": 32}}})
    for _ in range(3):  # a wrong partition, three times: each refused in one line, exit 2
        refused = subprocess.run(command + ["--partition", "nosuch"], env=env, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert all(s.attempts == 0 and s.state == "pending" for s in _states(out).values()), _states(out)
    for _ in range(3):  # submitted, then cancelled, three times
        submitted = subprocess.run(command + ["--partition", "debug"], env=env, capture_output=True, text=True)
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
        cancelled = subprocess.run([sys.executable, "-m", "dpcluster", "cancel", str(out)], env=env,
                                   capture_output=True, text=True)
        assert cancelled.returncode == 0, cancelled.stderr
        assert {s.state for s in _states(out).values()} <= {"cancelled", "done"}, _states(out)
    finished = subprocess.run(command + ["--partition", "debug", "--wait"], env=env, capture_output=True,
                              text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert _levels(out) == [("dense", 0, 0), ("random", 0, 1)]
    assert all(s.state == "done" and s.attempts == 1 for s in _states(out).values()), _states(out)


def test_a_second_coordinator_of_a_folder_says_which_process_holds_it(tmp_path):
    spec = tmp_path / "long.toml"
    # Long enough to outlast the second command's wait for the lock (it is killed once that has answered).
    SweepSpec.from_dict({**LONG, "base": {**LONG["base"], "training": {"epochs": 2000}}}).save(spec)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dpcluster", "sweep", str(spec), "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "logs").exists():  # running its first job
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert f"is being run by dpcluster (pid {first.pid} on " in second.stderr
    finally:
        first.kill()
        first.wait()
