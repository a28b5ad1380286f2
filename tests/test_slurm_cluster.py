"""Integration test against the real single-node Slurm cluster that slurm/cluster.sh runs.

Skipped when Slurm is not installed (no `sbatch` on PATH), unless DPCLUSTER_REQUIRE_SLURM is set:
then a missing or broken Slurm fails the test instead. Install and start the cluster with
`bash slurm/cluster.sh up`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path





def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_batch_job_runs_and_is_accounted(slurm_cluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    submitted = _run(
        [
            "sbatch", "--wait", "--parsable", "-p", "debug", "-J", "dpcluster-slurm-test",
            "-o", str(out), "--chdir", str(tmp_path),
            "--wrap", "echo hello-from-slurm; hostname",
        ],
        timeout=300,
    )
    assert submitted.returncode == 0, f"sbatch failed ({submitted.returncode}): {submitted.stderr}"
    job_id = submitted.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"unexpected sbatch --parsable output: {submitted.stdout!r}"

    text = out.read_text()
    assert "hello-from-slurm" in text
    assert text.split()[-1] == os.uname().nodename.split(".")[0]

    # slurmctld hands the job record to slurmdbd asynchronously: poll until it shows up.
    states: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        acct = _run(["sacct", "-j", job_id, "-n", "-o", "State", "-X"])
        states = acct.stdout.split()
        if states == ["COMPLETED"]:
            break
        time.sleep(1)
    assert states == ["COMPLETED"], f"sacct -j {job_id} reports {states!r}: {acct.stderr}"


def test_unknown_partition_is_rejected_by_slurm(slurm_cluster) -> None:
    result = _run(["sbatch", "-p", "nosuchpartition", "--wrap", "true"])
    assert result.returncode != 0
    assert "invalid partition" in result.stderr.lower(), result.stderr
