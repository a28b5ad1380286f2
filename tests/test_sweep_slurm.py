"""Sweeps submitted through submitit to the real single-node Slurm (slurm/cluster.sh)."""

import pyarrow.dataset as ds
import pytest

from dpcluster.errors import UserError
from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.spec import SweepSpec

pytest.importorskip("submitit")

SWEEP = {"name": "slurm", "methods": ["dense", "random"], "seeds": [0, 1], "sparsities": [0.2],
         "base": {"model": {"width": 8}, "pruning": {"rounds": 1}, "training": {"epochs": 1}}}


def test_a_digits_sweep_runs_as_slurm_job_arrays(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    manifest = run_sweep(SweepSpec.from_dict(SWEEP), tmp_path,
                         SlurmBackend(tmp_path / "logs", partition="debug", time_min=10), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    rows = ds.dataset(tmp_path / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["seed"], r["round"]) for r in rows) == [
        ("dense", 0, 0), ("dense", 1, 0), ("random", 0, 1), ("random", 1, 1)]
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


def test_an_unknown_partition_surfaces_slurm_s_message(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    assert SlurmBackend(tmp_path, partition="nosuch").slots() is None  # sinfo knows no such partition
    assert SlurmBackend(tmp_path, partition="debug").slots() == 2  # this node's two CPUs, one per job
    with pytest.raises(UserError, match="(?i)invalid partition") as error:
        run_sweep(SweepSpec.from_dict(SWEEP), tmp_path, SlurmBackend(tmp_path / "logs", partition="nosuch"), "cpu")
    assert "\n" not in str(error.value)


def test_a_validation_job_on_two_slurm_tasks_trains_data_parallel(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    sweep = SweepSpec.from_dict({"name": "ddp", "methods": ["dense"], "seeds": [0],
                                 "base": {"model": {"width": 8, "depth": 2},
                                          "training": {"epochs": 1, "batch_size": 64}}})
    manifest = run_sweep(sweep, tmp_path, SlurmBackend(tmp_path / "logs", partition="debug", time_min=10,
                                                       tasks_per_job=2), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    assert len(list((tmp_path / "results").rglob("*.parquet"))) == 1  # rank 0 alone wrote
    logs = " ".join(p.read_text() for p in (tmp_path / "logs").rglob("*_1_log.out"))
    assert "validate-dense-s0-digits-convnet-r0: process 1 of 2" in logs, "the second task joined the group"


def test_packs_split_a_batch_into_at_most_the_slots_in_order():
    from dpcluster.sweeps.slurm_backend import packs

    assert packs(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert packs(list(range(2)), 3) == [[0], [1]]
    assert packs(list(range(4)), None) == [[0], [1], [2], [3]]


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
