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
    assert logs, "submitit keeps a log per job"
    # Each job was granted one CPU (cpus_per_task = 1) on this two-core node, and runs torch on one thread.
    text = " ".join(p.read_text() for p in logs)
    assert ": 1 CPU thread\n" in text and "CPU threads" not in text, text


def test_an_unknown_partition_surfaces_slurm_s_message(slurm_cluster, tmp_path):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

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
