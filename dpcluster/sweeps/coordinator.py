"""The coordinator: expands a sweep, records its jobs in the sweep folder, and runs them stage by stage on a
backend. Running it again resumes: finished jobs are skipped, failed ones retried up to ``max_retries``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dpcluster.errors import UserError
from dpcluster.sweeps.backends import Backend
from dpcluster.sweeps.execute import JobCall
from dpcluster.sweeps.graph import Job, expand
from dpcluster.sweeps.manifest import Manifest
from dpcluster.sweeps.spec import SweepSpec

SPEC_FILE = "sweep.toml"
MANIFEST_FILE = "manifest.json"


def prepare(sweep: SweepSpec, sweep_dir: Path) -> tuple[list[Job], Manifest]:
    """The sweep's jobs and its manifest; the folder holds one sweep, so another spec there is refused."""
    jobs = expand(sweep)
    spec_path = sweep_dir / SPEC_FILE
    if spec_path.exists() and SweepSpec.load(spec_path) != sweep:
        raise UserError(f"{sweep_dir} holds another sweep ({spec_path}); use another --out")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not spec_path.exists():
        sweep.save(spec_path)
    manifest = Manifest.open(sweep_dir / MANIFEST_FILE)
    for job in jobs:
        manifest.add(job.id, job.name, job.kind)
    manifest.save()
    return jobs, manifest


def run_sweep(sweep: SweepSpec, sweep_dir: Path, backend: Backend, device: str = "auto",
              say: Callable[[str], None] = lambda text: None) -> Manifest:
    jobs, manifest = prepare(sweep, sweep_dir)
    for job in jobs:  # a job left "running" by a killed coordinator is simply run again
        if manifest.jobs[job.id].state == "running":
            manifest.jobs[job.id].state = "pending"
    while True:
        done = {job_id for job_id, state in manifest.jobs.items() if state.state == "done"}
        # A job gets one attempt plus max_retries retries, counted across runs of the sweep.
        ready = [job for job in jobs if job.id not in done and all(dep in done for dep in job.deps)
                 and manifest.jobs[job.id].attempts <= sweep.max_retries]
        if not ready:
            break
        stage = ready[0].kind
        batch = [job for job in ready if job.kind == stage]
        for job in batch:
            manifest.set(job.id, "running")
        say(f"{stage}: {len(batch)} job(s) on {backend.name}")
        for outcome in backend.run([JobCall(job, sweep_dir, device) for job in batch]):
            manifest.set(outcome.job_id, "done" if outcome.ok else "failed", outcome.error)
            if not outcome.ok:
                say(f"failed: {manifest.jobs[outcome.job_id].name}: {outcome.error}")
    return manifest
