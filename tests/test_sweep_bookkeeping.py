"""The coordinator's bookkeeping at scale: the manifest's journal (replay equals the state, atomic changes, O(1)
bytes per change), the ready queue (every job once, after its dependencies, without walking the sweep per job),
and one coordinator per folder. Pure: no job runs here."""

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from dpcluster.sweeps import coordinator as coordinator_module
from dpcluster.sweeps import manifest as manifest_module
from dpcluster.sweeps.backends import Outcome
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.jobs import get_kind
from dpcluster.sweeps.manifest import FolderBusy, JobState, Manifest, coordinator_lock, journal_file
from dpcluster.sweeps.spec import SweepSpec

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _states(manifest: Manifest) -> dict:
    return {job_id: vars(state).copy() for job_id, state in manifest.jobs.items()}


def test_the_journal_replays_to_the_state_through_every_kind_of_change_and_fold(tmp_path, monkeypatch):
    import random

    monkeypatch.setattr(manifest_module, "FOLD_BYTES", 2000)  # fold often
    path = tmp_path / "manifest.json"
    manifest = Manifest.open(path)
    draw = random.Random(0)
    ids = [f"job-{i}" for i in range(60)]
    for i, job_id in enumerate(ids[:40]):
        manifest.add(job_id, f"name-{i}", "validate")
    manifest.save()
    generations = {manifest.generation}
    for step in range(400):
        job_id = draw.choice(list(manifest.jobs))
        action = draw.randrange(5)
        if action == 0:
            manifest.set(job_id, "running")
        elif action == 1:
            manifest.set(job_id, draw.choice(["done", "failed"]), draw.choice([None, f"error {step}"]))
        elif action == 2:
            manifest.started({job_id: (f"{step}_1", (f"{step - 1}",))})
        elif action == 3:
            manifest.release(job_id)
        elif step < 300:
            new = ids[40 + step % 20]
            manifest.add(new, new, "pair")
            manifest.save()
        generations.add(manifest.generation)
        if step % 37 == 0:
            assert _states(Manifest.open(path, read_only=True)) == _states(manifest), step
    assert len(generations) > 3, "the journal was folded into new snapshots on the way"
    manifest.close()
    again = Manifest.open(path)
    assert _states(again) == _states(manifest)
    assert journal_file(path).read_text().count("\n") == 1, "opening for writing folds the journal in"


def test_a_change_torn_by_a_crash_is_dropped_and_the_rest_kept(tmp_path):
    path = tmp_path / "manifest.json"
    manifest = Manifest.open(path)
    manifest.add("a", "a", "mask")
    manifest.add("b", "b", "validate")
    manifest.set("a", "running")
    before = _states(manifest)
    manifest.close()
    with open(journal_file(path), "ab") as handle:  # the writer died in the middle of its next line
        handle.write(b'{"jobs":{"a":{"name":"a","kind":"mask","state":"do')
    assert _states(Manifest.open(path, read_only=True)) == before
    reopened = Manifest.open(path)  # folds, dropping the torn line for good
    reopened.set("b", "running")
    reopened.close()
    assert Manifest.open(path, read_only=True).jobs["b"].state == "running"
    assert Manifest.open(path, read_only=True).jobs["a"].state == "running"


def test_a_writer_killed_between_the_new_snapshot_and_the_new_journal_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    manifest = Manifest.open(path)
    for i in range(5):
        manifest.add(f"j{i}", f"j{i}", "validate")
    manifest.save()
    manifest.set("j1", "done")
    manifest.set("j2", "failed", "boom")
    expected = _states(manifest)
    real = manifest_module.write_atomic

    def dies_at_the_journal(target, write):
        if Path(target).suffix == ".journal":
            raise KeyboardInterrupt("killed")
        real(target, write)

    monkeypatch.setattr(manifest_module, "write_atomic", dies_at_the_journal)
    with pytest.raises(KeyboardInterrupt):
        manifest.fold()
    monkeypatch.setattr(manifest_module, "write_atomic", real)
    # The new snapshot is there beside the old journal, which it already holds: replaying it again is harmless,
    # and a journal of an older generation is not replayed at all.
    assert json.loads(path.read_text())["generation"] == json.loads(journal_file(path).read_text().splitlines()[0])[
        "generation"] + 1
    assert _states(Manifest.open(path, read_only=True)) == expected
    assert _states(Manifest.open(path)) == expected


def test_a_reader_racing_the_writer_sees_the_states_of_one_moment(tmp_path, monkeypatch):
    """The writer sets job t % m to attempt t // m + 1 at step t, folding often; every state a reader sees must be
    the state after some step t (never a mix of two moments)."""
    monkeypatch.setattr(manifest_module, "FOLD_BYTES", 4000)
    path = tmp_path / "manifest.json"
    jobs = 12
    manifest = Manifest.open(path)
    for k in range(jobs):
        manifest.add(f"j{k}", f"j{k}", "validate")
    manifest.save()
    done = threading.Event()

    def write():
        for t in range(3000):
            job = manifest.jobs[f"j{t % jobs}"]
            job.attempts = t // jobs + 1
            manifest.record([f"j{t % jobs}"])
        done.set()

    def moment(attempts: list[int]) -> bool:
        # After step t, job k has attempt floor((t - k) / m) + 1 for k <= t, else 0.
        t = max(range(jobs), key=lambda k: (attempts[k], k))  # the job set last
        last = (attempts[t] - 1) * jobs + t if attempts[t] else -1
        return all(attempts[k] == ((last - k) // jobs + 1 if k <= last else 0) for k in range(jobs))

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while not done.is_set() or seen < 5:
        state = Manifest.open(path, read_only=True)
        attempts = [state.jobs[f"j{k}"].attempts for k in range(jobs)]
        assert moment(attempts), attempts
        seen += 1
    writer.join()
    assert seen > 5


def test_a_manifest_written_before_the_journal_opens(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"x": {"name": "mask-x", "kind": "mask", "state": "done", "attempts": 1,
                                      "error": None, "scheduler_id": "5", "after": []}}))
    assert Manifest.open(path, read_only=True).jobs["x"] == JobState("mask-x", "mask", "done", 1, None, "5", [])
    manifest = Manifest.open(path)
    manifest.set("x", "failed", "later")
    manifest.close()
    assert Manifest.open(path, read_only=True).jobs["x"].error == "later"


def _bytes_written_per_change(folder: Path, jobs: int) -> float:
    """Bytes the manifest writes (snapshots and journal) per state change, over a sweep's life: every job added,
    then set running, then done."""
    manifest = Manifest.open(folder / "manifest.json")
    for i in range(jobs):
        manifest.add(f"validate-{i:012d}", f"validate-imp-0ep-s{i % 5}-cifar10-alexnet-r{i % 30}", "validate")
    manifest.save()
    for state in ("running", "done"):
        for i in range(jobs):
            manifest.set(f"validate-{i:012d}", state)
    manifest.close()
    return manifest.bytes_written / (2 * jobs)


def test_bytes_written_per_change_do_not_grow_with_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "FOLD_BYTES", 64 << 10)
    small = _bytes_written_per_change(tmp_path / "small", 1000)
    large = _bytes_written_per_change(tmp_path / "large", 16000)
    # A rewritten JSON manifest costs O(jobs) per change: 16 times more for 16 times the jobs. A journal costs
    # the same per change whatever the size (folding's share is amortised).
    assert large < 1.5 * small, (small, large)
    assert large < 1000, large


# -- the ready queue -------------------------------------------------------------------------------------------


class _Instant:
    """A backend whose jobs end at once, in the order they were sent (nothing runs); records what it was sent."""

    name = "instant"

    def __init__(self, resolves: bool, fail: set = frozenset()):
        self.resolves_dependencies, self.fail = resolves, set(fail)
        self.queue, self.sent = [], []

    def submit(self, call, after=()):
        self.queue.append((call, after))
        self.sent.append((call.job.id, tuple(after)))

    def outstanding(self):
        return len(self.queue)

    def wait(self):
        call, _ = self.queue.pop(0)
        if call.job.id in self.fail:
            self.fail.discard(call.job.id)  # fails once
            return [Outcome(call.job.id, False, "RuntimeError: once")]
        return [Outcome(call.job.id, True)]


@pytest.fixture
def nothing_settles(monkeypatch):
    """Every job goes to the backend (settling reads files these tests do not make)."""
    import dataclasses

    monkeypatch.setattr(coordinator_module, "get_kind",
                        lambda kind: dataclasses.replace(get_kind(kind), settle=lambda job, layout, world_size: False))


def _papers_sweep() -> SweepSpec:
    # The papers' AlexNet sweep with every analysis at every level and both rewind points: 4,556 jobs.
    sweep = SweepSpec.load(JOBS / "alexnet_cifar10.toml")
    return sweep.replace(analyses=("stability", "landscape", "sharpness", "kept_weights"), rewinds=("0ep", "1ep"),
                         analysis=sweep.analysis.replace(sparsities=()))


@pytest.mark.parametrize("resolves", [False, True])
def test_every_job_is_sent_once_after_its_dependencies_without_walking_the_sweep(tmp_path, nothing_settles,
                                                                                  monkeypatch, resolves):
    sweep = _papers_sweep()
    jobs = expand(sweep)
    assert len(jobs) == 4556
    failing = {next(job.id for job in jobs if job.kind == "mask"), next(job.id for job in jobs if job.kind == "pair")}
    backend = _Instant(resolves, failing)
    looked_at = Counter()
    real = coordinator_module._Run.may_start

    def counted(self, job):
        looked_at["may_start"] += 1
        return real(self, job)

    monkeypatch.setattr(coordinator_module._Run, "may_start", counted)
    manifest = coordinator_module.run_sweep(sweep, tmp_path, backend, "cpu")
    assert all(state.state == "done" for state in manifest.jobs.values())
    sent = Counter(job_id for job_id, _ in backend.sent)
    assert set(sent) == {job.id for job in jobs}
    assert sent - Counter(set(sent)) == Counter(failing), "only the jobs that failed went again, once each"
    order = {}
    for position, (job_id, after) in enumerate(backend.sent):
        order.setdefault(job_id, position)
    by_id = {job.id: job for job in jobs}
    for job_id, position in order.items():
        for dep in by_id[job_id].deps:
            # Sent after every dependency was sent (and, where the backend does not wait itself, ended).
            assert order[dep] < position, (by_id[job_id].name, by_id[dep].name)
    # The ready queue looks at each job a bounded number of times (walking the sweep on every pass would be
    # thousands of times per job here).
    assert looked_at["may_start"] < 4 * len(jobs), looked_at


def test_a_job_waits_for_a_failed_dependency_s_retry_and_never_runs_before_it(tmp_path, nothing_settles):
    sweep = SweepSpec.load(JOBS / "digits_small.toml")
    jobs = expand(sweep)
    distill = next(job for job in jobs if job.kind == "distill")
    backend = _Instant(False, {distill.id})
    coordinator_module.run_sweep(sweep, tmp_path, backend, "cpu")
    sent = [job_id for job_id, _ in backend.sent]
    retried = len(sent) - 1 - sent[::-1].index(distill.id)
    waiting = [job.id for job in jobs if distill.id in job.deps]
    assert waiting and all(sent.index(job_id) > retried for job_id in waiting)


def test_one_coordinator_runs_a_folder_at_a_time(tmp_path):
    with coordinator_lock(tmp_path):
        with pytest.raises(FolderBusy, match=r"being run by dpcluster \(pid \d+ on "):
            with coordinator_lock(tmp_path, wait_seconds=0.3):
                pass
    with coordinator_lock(tmp_path, wait_seconds=0):  # free again once the holder let go
        pass


def test_planning_the_papers_sweep_loads_neither_torch_nor_pyarrow():
    import subprocess
    import sys

    code = ("import sys; from dpcluster.sweeps.graph import expand; from dpcluster.sweeps.spec import SweepSpec; "
            "from dpcluster.sweeps.coordinator import run_sweep; from dpcluster.sweeps.slurm_backend import "
            "SlurmBackend; from dpcluster.cli.main import build_parser; build_parser(); "
            f"expand(SweepSpec.load({str(JOBS / 'alexnet_cifar10.toml')!r})); "
            "print(sorted(m for m in ('torch', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
