"""Sweeps submitted through submitit to the real single-node Slurm (slurm/cluster.sh)."""

from collections import Counter

import pyarrow.dataset as ds
import pytest

from dpcluster.errors import UserError
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.manifest import Manifest
from conftest import SLURM_MAX_ARRAY_SIZE, SLURM_MAX_SUBMIT_JOBS
from dpcluster.sweeps.spec import SweepSpec

pytest.importorskip("submitit")

SWEEP = {"name": "slurm", "methods": ["dense", "random"], "seeds": [0, 1], "sparsities": [0.2],
         "base": {"model": {"width": 8}, "pruning": {"rounds": 1}, "training": {"epochs": 1}}}


def test_a_digits_sweep_runs_as_slurm_job_arrays(slurm_cluster, tmp_path):
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.slurm_backend import SlurmBackend
    from dpcluster.tracking.registry import Track, write_tracks

    # What --track keeps in the folder: each Slurm job opens the tracker where it runs.
    write_tracks(SweepLayout(tmp_path).tracking_file, [Track("tensorboard", str(tmp_path / "tb"))])
    manifest = run_sweep(SweepSpec.from_dict(SWEEP), tmp_path,
                         SlurmBackend(tmp_path / "logs", partition="debug", time_min=10), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    rows = ds.dataset(tmp_path / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["seed"], r["round"]) for r in rows) == [
        ("dense", 0, 0), ("dense", 1, 0), ("random", 0, 1), ("random", 1, 1)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for row in rows:
        run = tmp_path / "tb" / f"{row['method']}-s{row['seed']}-{row['experiment_id']}-r{row['round']}"
        (logged,) = EventAccumulator(str(run)).Reload().Scalars("level/test_accuracy")
        assert logged.value == pytest.approx(row["test_accuracy"])
    logs = list((tmp_path / "logs").rglob("*_log.out"))
    # Six jobs (two mask searches, four validations) in fewer Slurm tasks: the jobs that became ready together
    # beyond what this two-CPU node runs side by side shared a process.
    assert 2 <= len(logs) < 6, logs
    text = " ".join(p.read_text() for p in logs)
    assert all(f"{name}: 1 CPU thread" in text for name in (
        "mask-random-s0-digits-convnet", "mask-random-s1-digits-convnet", "validate-dense-s0-digits-convnet-r0",
        "validate-dense-s1-digits-convnet-r0", "validate-random-s0-digits-convnet-r1",
        "validate-random-s1-digits-convnet-r1"))
    # Each job was granted one CPU (cpus_per_task = 1) on this two-core node, and runs torch on one thread.
    assert "CPU threads" not in text, text


def test_an_unknown_partition_surfaces_slurm_s_message(slurm_cluster, tmp_path, capsys):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    assert SlurmBackend(tmp_path, partition="nosuch").slots() is None  # sinfo knows no such partition
    assert SlurmBackend(tmp_path, partition="debug").slots() == 2  # this node's two CPUs, one per job
    with pytest.raises(UserError, match="(?i)invalid partition") as error:
        run_sweep(SweepSpec.from_dict(SWEEP), tmp_path, SlurmBackend(tmp_path / "logs", partition="nosuch"), "cpu")
    assert "\n" not in str(error.value)
    assert "invalid partition" not in capsys.readouterr().err.lower()  # said once, in the error, not again


def test_a_validation_job_on_two_slurm_tasks_trains_data_parallel(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    sweep = SweepSpec.from_dict({"name": "ddp", "methods": ["dense"], "seeds": [0],
                                 "base": {"model": {"width": 8, "depth": 2},
                                          "training": {"epochs": 1, "batch_size": 64}}})
    manifest = run_sweep(sweep, tmp_path, SlurmBackend(tmp_path / "logs", partition="debug", time_min=10,
                                                       tasks_per_job=2), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 1  # rank 0 alone wrote
    from dpcluster.results.levels import read_levels

    assert read_levels(tmp_path / "results", columns=["world_size"]).column("world_size").to_pylist() == [2]
    logs = " ".join(p.read_text() for p in (tmp_path / "logs").rglob("*_1_log.out"))
    assert "validate-dense-s0-digits-convnet-r0: process 1 of 2" in logs, "the second task joined the group"


def test_tasks_run_whole_chains_where_the_partition_is_small_and_single_jobs_where_it_is_not():
    from dpcluster.sweeps.execute import JobCall
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.slurm_backend import Resources, task_groups

    jobs = expand(SweepSpec.load("jobs/digits_small.toml"))
    items = [(JobCall(job, "/sweep"), job.deps) for job in jobs]
    names = {job.id: job.name for job in jobs}

    def arrays(slots):
        return [([[call.job.name for call in task] for task in tasks], sorted(names[dep] for dep in after))
                for _, tasks, after in task_groups(items, lambda kind: Resources(), lambda res: slots)]

    # A partition of 100 CPUs: every job a task of its own, waiting on exactly its own dependencies.
    roomy = arrays(100)
    assert sum(len(tasks) for tasks, _ in roomy) == len(jobs)
    assert (["validate-imp-0ep-s1-digits-convnet-r4"], ["mask-imp-0ep-s1-digits-convnet"]) in \
        [([task[0]], after) for tasks, after in roomy for task in tasks if task[0].endswith("s1-digits-convnet-r4")]
    # Two CPUs: each search runs with its validations in one task; the distilled set, which three searches wait
    # on, alone; the distilled searches after it alone; every chain in one of at most two tasks per array.
    small = arrays(2)
    assert small[0] == ([["distill-dm-digits-convnet-ipc10"]], [])
    assert all(len(tasks) <= 2 for tasks, _ in small)
    (ready,) = [tasks for tasks, after in small if not after and len(tasks) == 2]
    chain = ["mask-imp-0ep-s1-digits-convnet"] + [f"validate-imp-0ep-s1-digits-convnet-r{r}" for r in (4, 8, 11)]
    task = next(task for task in ready if chain[0] in task)
    assert task[task.index(chain[0]):task.index(chain[0]) + 4] == chain
    assert sorted(name for task in ready for name in task if name.startswith("mask-")) == sorted(
        f"mask-{m}-s{s}-digits-convnet" for m in ("imp-0ep", "random") for s in (0, 1, 2))
    (distilled,) = [tasks for tasks, after in small if after == ["distill-dm-digits-convnet-ipc10"]]
    assert sum(len(task) for task in distilled) == 12
    assert small[-1] == ([["aggregate"]], sorted(name for name in names.values() if name != "aggregate"))


def test_failing_jobs_in_a_pack_each_report_and_the_pack_goes_on(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    sweep = SweepSpec.from_dict({"name": "bad", "methods": ["dense"], "seeds": [0, 1, 2, 3], "max_retries": 0,
                                 "base": {"model": {"width": 8}, "training": {"epochs": 1}}})
    # A file where the results folder should be makes every validation fail when it writes its result.
    (tmp_path / "results").write_text("not a folder")
    manifest = run_sweep(sweep, tmp_path, SlurmBackend(tmp_path / "logs", partition="debug", time_min=10), "cpu")
    failed = [s for s in manifest.jobs.values() if s.kind == "validate"]
    assert len(failed) == 4 and all(s.state == "failed" for s in failed)
    assert all("Error" in s.error and "log " in s.error for s in failed), [s.error for s in failed]
    # Four jobs in two tasks of two: the second job of each pack ran after the first had failed.
    assert len(list((tmp_path / "logs").rglob("*_log.out"))) == 2


def test_a_requeued_job_resumes_mid_training_with_the_same_result(slurm_cluster, tmp_path, monkeypatch):
    import re
    import subprocess
    import threading
    import time

    from dpcluster.sweeps.backends import LocalBackend
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    sweep = SweepSpec.from_dict({"name": "requeue", "methods": ["dense"], "seeds": [0],
                                 "base": {"model": {"width": 32}, "training": {"epochs": 40}}})
    out = tmp_path / "out"
    monkeypatch.setenv("DPCLUSTER_PROGRESS_SECONDS", "0")  # the Slurm job inherits it: progress every epoch
    backend = SlurmBackend(out / "logs", partition="debug", time_min=10)
    finished = {}
    thread = threading.Thread(target=lambda: finished.update(manifest=run_sweep(sweep, out, backend, "cpu")))
    thread.start()
    deadline = time.time() + 300
    while not list((out / "progress").glob("*/*.pt")) if (out / "progress").exists() else True:
        assert thread.is_alive() and time.time() < deadline, "the job ended before it could be requeued"
        time.sleep(0.05)
    # The validation's Slurm job (the aggregate's waits on it).
    (job_id,) = [pack.task for pack in backend.running.values() if pack.calls[0].job.kind == "validate"]
    requeued = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    assert requeued.returncode == 0, requeued.stderr
    # Slurm defers a requeued job's start (BeginTime); let it start as soon as it is pending again.
    while "JobState=PENDING" not in subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                                                   text=True).stdout:
        assert time.time() < deadline
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True, text=True)
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert all(state.state == "done" for state in finished["manifest"].jobs.values()), finished["manifest"].jobs
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert re.search(r"Restarts=([1-9])", restarts), restarts
    log = " ".join(p.read_text() for p in (out / "logs").rglob("*_log.out"))
    resumed = re.search(r"round 0: validation: resumed from its progress at step (\d+)", log)
    assert resumed and int(resumed.group(1)) > 0, log
    # The same numbers as a run that was never interrupted.
    alone = tmp_path / "alone"
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CPUS_PER_TASK", "1")  # one thread, as the Slurm job had: the same float sums
        run_sweep(sweep, alone, LocalBackend(), "cpu")
    torch.set_num_threads(threads)
    (requeued_row,), (whole,) = (ds.dataset(f / "results", format="parquet", partitioning="hive").to_table()
                                 .to_pylist() for f in (out, alone))
    for key in ("test_accuracy", "test_loss", "validation_examples"):
        assert requeued_row[key] == whole[key], key


def _start_slurm_sweep(sweep, tmp_path, *options):
    """``dpcluster sweep --backend slurm --wait`` in a process of its own: the command, its environment, the sweep
    folder and the process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    spec = tmp_path / "sweep.toml"
    sweep.save(spec)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dpcluster", "sweep", str(spec), "--backend", "slurm", "--partition", "debug",
               "--out", str(out), "--device", "cpu", *(options or ["--wait"])]
    # Progress after every epoch, however short (by default a training saves every 30 s).
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "DPCLUSTER_PROGRESS_SECONDS": "0"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return command, env, out, process


def _jobs(out):
    """The sweep folder's job states (read as dpcluster status reads them, changing nothing)."""
    return Manifest.open(out / "manifest.json", read_only=True).jobs


def test_a_killed_coordinator_is_rerun_without_submitting_anything_twice(slurm_cluster, tmp_path):
    import signal
    import subprocess
    import time

    sweep = SweepSpec.from_dict({"name": "killed", "methods": ["dense", "random"], "seeds": [0, 1],
                                 "sparsities": [0.2, 0.36],
                                 "base": {"model": {"width": 32}, "pruning": {"rounds": 2},
                                          "training": {"epochs": 8}}})
    command, env, out, process = _start_slurm_sweep(sweep, tmp_path)
    deadline = time.time() + 300

    def submitted() -> bool:
        return any(job.scheduler_id for job in _jobs(out).values())

    while not submitted():
        assert process.poll() is None and time.time() < deadline, "the sweep ended before the kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # while its first jobs are queued or running
    process.wait()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "following" in again.stdout, again.stdout[-3000:]
    # Every job went to Slurm exactly once: no job id is in two submissions.
    sent = _submissions(out)
    assert sent and all(count == 1 for count in sent.values()), sent
    rows = ds.dataset(out / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    keys = sorted((r["method"], r["seed"], r["round"]) for r in rows)
    assert keys == sorted([("dense", s, 0) for s in (0, 1)] + [("random", s, r) for s in (0, 1) for r in (1, 2)])


def test_status_shows_slurm_s_view_and_cancel_leaves_nothing_queued(slurm_cluster, tmp_path, capsys):
    import subprocess
    import time

    from dpcluster.cli.main import main

    sweep = SweepSpec.from_dict({"name": "cancelled", "methods": ["dense"], "seeds": [0, 1, 2, 3],
                                 "base": {"model": {"width": 32}, "training": {"epochs": 200}}})
    command, env, out, process = _start_slurm_sweep(sweep, tmp_path)
    deadline = time.time() + 300
    while not (out / "progress").exists() or not list((out / "progress").glob("*/*.pt")):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Slurm's view" in printed and "RUNNING" in printed, printed
    assert main(["cancel", str(out)]) == 0
    assert "cancelled 5 job(s)" in capsys.readouterr().out  # four validations and the aggregate
    assert process.wait(timeout=120) == 1  # the coordinator ends by itself, submitting nothing more
    ids = {job.scheduler_id for job in _jobs(out).values() if job.scheduler_id}
    queued = subprocess.run(["squeue", "--noheader", "--format=%i"], capture_output=True, text=True).stdout.split()
    assert not ids & set(queued), queued
    states = {job.state for job in _jobs(out).values() if job.kind == "validate"}
    assert states == {"cancelled"}, states
    assert main(["status", str(out)]) == 0
    assert "CANCELLED" in capsys.readouterr().out


def _submissions(out) -> Counter:
    """How often each job went to Slurm (submitit keeps every submitted pack's pickle)."""

    from submitit.core.utils import pickle_load

    return Counter(call.job.id for path in (out / "logs").rglob("*_submitted.pkl")
                   for call in pickle_load(path).args[0])


def _sweep_queued(out) -> set:
    import subprocess

    ids = {job.scheduler_id for job in _jobs(out).values() if job.scheduler_id}
    listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i"], capture_output=True, text=True)
    return ids & set(listed.stdout.split())


def test_submit_log_off_and_rerun_after_a_failure_repeats_only_the_failed_chain(slurm_cluster, tmp_path, capsys):
    import subprocess
    import time

    from dpcluster.cli.main import main
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.layout import SweepLayout

    sweep = SweepSpec.from_dict({"name": "logoff", "methods": ["distilled", "random"], "seeds": [0, 1],
                                 "sparsities": [0.2, 0.36], "images_per_class": [2],
                                 "base": {"model": {"width": 8}, "pruning": {"rounds": 2}, "training": {"epochs": 1},
                                          "distilled": {"dm": {"iterations": 3}},
                                          "distilled_training": {"epochs": 3}}})
    jobs = expand(sweep)
    layout = SweepLayout(tmp_path / "out")
    # Two failures: the distilled set (its own Slurm job, which the distilled searches wait on through Slurm)
    # and random seed 1's search (its validations run after it in the same task). Files in the way do it.
    distill = next(job for job in jobs if job.kind == "distill")
    broken = next(job for job in jobs if job.kind == "mask" and job.experiment.method == "random"
                  and job.experiment.seed == 1)
    layout.root.mkdir()
    layout.distilled_cache.write_text("in the way")
    layout.search_dir(broken.experiment).parent.mkdir()
    layout.search_dir(broken.experiment).write_text("in the way")

    def failed_or_waiting(job) -> bool:
        spec = job.experiment
        return job.kind in ("distill", "aggregate") or spec.method == "distilled" or spec.seed == 1

    chain = {job.id for job in jobs if failed_or_waiting(job)}
    command, env, out, process = _start_slurm_sweep(sweep, tmp_path, "--time-min", "10")
    assert process.wait(timeout=120) == 0  # it returns once Slurm holds the graph, before the jobs end
    states = _jobs(out)
    assert {s.state for s in states.values()} == {"running"}, states
    distilled_masks = [s for s in states.values() if s.name.startswith("mask-distilled")]
    assert len(distilled_masks) == 2 and all(s.after == [states[distill.id].scheduler_id]
                                             for s in distilled_masks), states
    files = {path: path.read_bytes() for path in (out / "manifest.json", out / "manifest.journal")}
    deadline = time.time() + 300
    while _sweep_queued(out):  # nothing waits forever on the failed set: Slurm cancels its dependents
        assert time.time() < deadline, _sweep_queued(out)
        time.sleep(1)
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    failed = sorted(line for line in printed.splitlines() if line.startswith("failed"))
    assert len(failed) == 2 and distill.name in failed[0] and broken.name in failed[1], printed
    for line in failed:  # its last error line, and a log that exists
        assert "Error" in line and open(line.rsplit("log ", 1)[1].rstrip(")")).read(), line
    assert {path: path.read_bytes() for path in files} == files, "status changes nothing"
    first = _submissions(out)
    assert set(first) == {job.id for job in jobs} and set(first.values()) == {1}
    # Fixed, and run again: only the failed jobs and what waited on them go to Slurm again.
    layout.distilled_cache.unlink()
    layout.search_dir(broken.experiment).unlink()
    again = subprocess.run(command[:-2] + ["--wait"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = _submissions(out) - first
    names = {job.id: job.name for job in jobs}
    assert sorted(names[i] for i in second) == sorted(names[i] for i in chain) and set(second.values()) == {1}
    rows = ds.dataset(out / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["seed"], r["round"]) for r in rows) == [
        (m, s, r) for m in ("distilled", "random") for s in (0, 1) for r in (1, 2)]
    assert (out / "aggregate.parquet").exists()


def test_dry_run_prints_the_sbatch_scripts_and_submits_nothing(slurm_cluster, tmp_path, capsys):
    import subprocess

    from dpcluster.cli.main import main

    spec = tmp_path / "sweep.toml"
    SweepSpec.from_dict(SWEEP).save(spec)

    def accounted() -> list[str]:
        return subprocess.run(["sacct", "--noheader", "--allocations", "--format=JobID", "--starttime", "now-1day"],
                              capture_output=True, text=True).stdout.split()

    before = accounted()
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--backend", "slurm", "--partition", "debug", "--out", str(out), "--dry-run",
                 "--setup", "echo site setup", "--sbatch", "comment=dp-test", "--stage", "validate:time_min=7",
                 "--requeues", "5"]) == 0
    printed = capsys.readouterr().out
    assert accounted() == before and not out.exists()
    # The limits it read, and how the sweep will go (all of it fits here).
    assert f"# Slurm limits read: MaxArraySize {SLURM_MAX_ARRAY_SIZE} (tasks per array)" in printed, printed
    assert f"association root/root MaxSubmitJobs {SLURM_MAX_SUBMIT_JOBS}" in printed
    assert "# 7 task(s), all submitted now" in printed
    heads = [line for line in printed.splitlines() if line.startswith("# sbatch ")]
    # Validations ask for other resources (--stage), so each search is a Slurm job of its own that its level's
    # validation waits on; the aggregate waits on every array, each named whole.
    assert heads == ["# sbatch <1> -- task 0: mask-random-s0-digits-convnet",
                     "# sbatch <2> -- task 0: mask-random-s1-digits-convnet",
                     "# sbatch <3> -- task 0: validate-dense-s0-digits-convnet-r0; task 1: "
                     "validate-dense-s1-digits-convnet-r0",
                     "# sbatch <4>, after <1> -- task 0: validate-random-s0-digits-convnet-r1",
                     "# sbatch <5>, after <2> -- task 0: validate-random-s1-digits-convnet-r1",
                     "# sbatch <6>, after <1>, <2>, <3>_0 (+3 more) -- task 0: aggregate"], printed
    # Each distinct script once: the searches' and the aggregate's, the validations' array and a single
    # validation's (their own time limit); the arrays that differ only in their dependencies say just that.
    scripts = [block for block in printed.split("#!/bin/bash")[1:]]
    assert len(scripts) == 3, printed
    assert all("#SBATCH --kill-on-invalid-dep=yes" in s and "#SBATCH --comment=dp-test" in s and
               "# setup\nexport PYTHONPATH=" in s and "\necho site setup\n" in s for s in scripts), printed
    assert ["#SBATCH --time=7" in s for s in scripts] == [False, True, True]
    assert "#SBATCH --array=0-1%2" in scripts[1]
    assert "#SBATCH --dependency='afterok:<1>'" in printed and "#SBATCH --dependency='afterok:<2>'" in printed
    assert "#SBATCH --dependency='afterok:<1>:<2>:<3>:<4>:<5>'" in printed


def test_a_snapshot_runs_the_code_as_it_was_submitted(slurm_cluster, tmp_path):
    sweep = SweepSpec.from_dict({"name": "snap", "methods": ["dense"], "seeds": [0],
                                 "base": {"model": {"width": 8}, "training": {"epochs": 1}}})
    command, env, out, process = _start_slurm_sweep(sweep, tmp_path, "--snapshot", "--wait")
    assert process.wait(timeout=300) == 0
    (snapshot,) = (out / "code").iterdir()
    assert (snapshot / "dpcluster" / "sweeps" / "slurm_backend.py").exists()
    log = " ".join(p.read_text() for p in (out / "logs").rglob("*_log.out"))
    assert f"dpcluster from {snapshot.resolve() / 'dpcluster'}" in log, log


def test_a_task_lost_mid_run_fails_only_the_job_it_was_running(tmp_path, monkeypatch):
    from dpcluster.sweeps import slurm_backend
    from dpcluster.sweeps.execute import JobCall
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.scheduler_state import SchedulerState

    jobs = [job for job in expand(SweepSpec.from_dict(SWEEP)) if job.kind != "aggregate"][:3]
    backend = slurm_backend.SlurmBackend(tmp_path)
    backend.attach([JobCall(job, tmp_path) for job in jobs], "7_1", ("6",))
    (tmp_path / "outcomes").mkdir()
    (tmp_path / "outcomes" / f"{jobs[0].id}.json").write_text('{"ok": true}')
    monkeypatch.setattr(slurm_backend, "queued", lambda: {})  # the task has left the queue
    monkeypatch.setattr(slurm_backend, "slurm_states", lambda ids: {
        "6": SchedulerState("6", "COMPLETED"), "7_1": SchedulerState("7_1", "NODE_FAIL")})
    first, running, never = backend.poll()
    assert first.ok and not running.ok and not running.blocked and "Slurm NODE_FAIL" in running.error
    assert not running.attempt_used  # a node failure is not the job's own: it costs no attempt
    assert never.blocked and never.error.startswith("never started")
    assert "7_1" in backend.failed_tasks and not backend.running
    # A task Slurm cancelled because a job it waited on failed: every job of it is blocked, none an attempt.
    backend.attach([JobCall(job, tmp_path) for job in jobs[1:]], "8", ("7_1",))
    assert all(outcome.blocked for outcome in backend.poll())
