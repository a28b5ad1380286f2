"""Sweeps as Ray tasks on a real local Ray."""

import pyarrow.dataset as ds
import pytest

from dpcluster.sweeps.coordinator import run_sweep
from dpcluster.sweeps.spec import SweepSpec

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_runs_a_sweep_with_fractional_cpus(local_ray, tmp_path):
    from dpcluster.sweeps.ray_backend import RayBackend

    sweep = SweepSpec.from_dict({
        "name": "ray", "methods": ["dense", "random"], "seeds": [0, 1], "sparsities": [0.2],
        "base": {"model": {"width": 8}, "pruning": {"rounds": 1}, "training": {"epochs": 1}},
    })
    manifest = run_sweep(sweep, tmp_path, RayBackend(cpus_per_job=0.5), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    rows = ds.dataset(tmp_path / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["seed"], r["round"]) for r in rows) == [
        ("dense", 0, 0), ("dense", 1, 0), ("random", 0, 1), ("random", 1, 1)]
    assert (tmp_path / "aggregate.parquet").exists()
    # Half a CPU per task: each job runs torch on one thread, not one per core.
    logs = [p.read_text() for p in (tmp_path / "logs").glob("validate-*.log")]
    assert logs and all(": 1 CPU thread\n" in text for text in logs), logs


def test_a_failing_task_is_recorded_not_fatal(local_ray, tmp_path):
    from dpcluster.sweeps.ray_backend import RayBackend

    sweep = SweepSpec.from_dict({"name": "bad", "methods": ["dense"], "seeds": [0], "max_retries": 0,
                                 "base": {"model": {"width": 8}, "training": {"epochs": 1}}})
    # A file where the results folder should be makes every validation job fail inside its task.
    (tmp_path / "results").write_text("not a folder")
    manifest = run_sweep(sweep, tmp_path, RayBackend(), "cpu")
    failed = [s for s in manifest.jobs.values() if s.state == "failed"]
    assert len(failed) == 1 and failed[0].kind == "validate" and failed[0].error


def test_ray_workers_import_a_factory_network_from_the_submitting_folder(local_ray, tmp_path, monkeypatch):
    from dpcluster.sweeps.ray_backend import RayBackend

    (tmp_path / "raynets").mkdir()
    (tmp_path / "raynets" / "__init__.py").write_text(
        "from torch import nn\n\n"
        "def mlp(input_shape, num_classes):\n"
        "    c, h, w = input_shape\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Linear(16, num_classes))\n")
    # Found here through the folder the sweep is run from (as `dpcluster` finds it), on no PYTHONPATH entry.
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sweep = SweepSpec.from_dict({
        "name": "ray", "methods": ["dense", "random"], "seeds": [0], "models": ["raynets:mlp"],
        "base": {"model": {"name": "raynets:mlp"}, "pruning": {"rounds": 1}, "training": {"epochs": 1}},
    })
    manifest = run_sweep(sweep, tmp_path / "out", RayBackend(cpus_per_job=0.5), "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values()), manifest.jobs
    rows = ds.dataset(tmp_path / "out" / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["model"]) for r in rows) == [("dense", "raynets:mlp"), ("random", "raynets:mlp")]
