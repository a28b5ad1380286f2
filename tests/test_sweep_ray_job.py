"""The coordinator itself on a Ray cluster: ``ray job submit`` runs ``dpcluster sweep --backend ray`` as the job's
driver on a real Ray head (started with ``ray start``, dashboard and job server included), and Ray receives the
whole job graph at once, each task waiting on its dependencies."""

import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from dpcluster.sweeps.manifest import Manifest

pytest.importorskip("ray")

SWEEP = """name = "ray-job"
methods = ["dense", "random"]
seeds = [0, 1]
sparsities = [0.2]
[base.model]
width = 8
[base.pruning]
rounds = 1
[base.training]
epochs = 1
"""


def test_ray_job_submit_runs_the_coordinator_on_the_cluster(ray_head, tmp_path):
    ray, address, env = ray_head.ray, ray_head.dashboard, ray_head.env
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    done = subprocess.run([ray, "job", "submit", "--address", address, "--", sys.executable, "-m", "dpcluster",
                           "sweep", str(spec), "--backend", "ray", "--out", str(out), "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Every job went to Ray at once: the validations were handed over before their mask searches ended.
    assert "7 job(s) to ray: 2 mask, 4 validate, 1 aggregate" in done.stdout, done.stdout[-3000:]
    rows = ds.dataset(out / "results", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted((r["method"], r["seed"], r["round"]) for r in rows) == [
        ("dense", 0, 0), ("dense", 1, 0), ("random", 0, 1), ("random", 1, 1)]
    manifest = Manifest.open(out / "manifest.json", read_only=True).jobs
    assert all(job.state == "done" and job.attempts <= 1 for job in manifest.values())
