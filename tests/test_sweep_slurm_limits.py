"""Submissions inside a Slurm site's limits: arrays split at MaxArraySize, never more queued than a submit limit
allows, the rest held and sent as room frees up; then on the real local Slurm (slurm/cluster.sh) with small limits,
a sweep several times larger than them run by the feeder chain with no process of ours following it."""

import contextlib
import subprocess
import threading
import time
from collections import Counter

import pytest

from dpcluster.results.levels import read_levels
from dpcluster.sweeps.execute import JobCall
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.slurm_limits import SiteLimits, SubmitLimit, read_limits, split_array
from dpcluster.sweeps.spec import SweepSpec

# 20 dense validations, 20 random searches with one level each, and the aggregate: 61 jobs, most of them ready
# at once, each a task of its own where the partition is large.
WIDE = {"name": "wide", "methods": ["dense", "random"], "seeds": list(range(20)), "sparsities": [0.2],
        "base": {"model": {"width": 8}, "pruning": {"rounds": 1}, "training": {"epochs": 1}}}


def test_split_array_keeps_the_order_and_the_size():
    assert split_array(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split_array([], 3) == []


def test_room_is_the_tightest_limit():
    limits = SiteLimits(8, (SubmitLimit("MaxJobCount", 10000, 50), SubmitLimit("QOS q MaxSubmitJobsPerUser", 20, 15)))
    assert limits.room() == 5 and limits.tightest().what.startswith("QOS")
    assert SiteLimits().room() is None
    assert SubmitLimit("x", 3, 9).room == 0


class _Queue:
    """A stand-in for sbatch and squeue: tasks sent, and which of them have ended."""

    def __init__(self):
        self.arrays, self.ended, self.sent_at = [], set(), {}

    def queued(self) -> int:
        return sum(1 for array in self.arrays for task in array["ids"] if task not in self.ended)


def _backend(tmp_path, queue: _Queue, limit: int, max_array: int):
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    backend = SlurmBackend(tmp_path, limits=SiteLimits(max_array, (SubmitLimit("test", limit, 0),)))
    backend.slots = lambda resources=None: None  # a large partition: every job a task of its own

    def send(groups, resources, after):
        number = len(queue.arrays) + 1
        ids = [f"{number}_{i}" for i in range(len(groups))] if len(groups) > 1 else [str(number)]
        assert all(task in queue.sent_at for task in after), "waits only on tasks already sent"
        queue.arrays.append({"ids": ids, "jobs": [[call.job.id for call in group] for group in groups]})
        queue.sent_at.update({task: len(queue.arrays) for task in ids})
        backend._sent(groups, ids, after)

    backend._send = send
    return backend


def test_arrays_fit_the_site_and_what_does_not_fit_is_held_then_sent_as_room_frees(tmp_path):
    jobs = expand(SweepSpec.from_dict(WIDE))
    queue, limit, max_array = _Queue(), 9, 4
    backend = _backend(tmp_path, queue, limit, max_array)
    for job in jobs:
        backend.submit(JobCall(job, tmp_path), job.deps)
    backend.flush()
    # Not everything fits: all but one slot (for the feeder that sends the rest) is used.
    assert queue.queued() == limit - 1 and backend.held_jobs() == len(jobs) - (limit - 1)
    rounds = 0
    while backend.held_jobs():
        rounds += 1
        assert rounds < 100
        # The oldest two queued tasks end; the limits are read again (what is queued now).
        running = [task for array in queue.arrays for task in array["ids"] if task not in queue.ended]
        queue.ended.update(running[:2])
        backend.limits = SiteLimits(max_array, (SubmitLimit("test", limit, queue.queued()),))
        backend._limits_read = (float("-inf"), None, 0)
        backend._send_held()
        assert queue.queued() <= limit
    assert all(len(array["ids"]) <= max_array for array in queue.arrays)
    sent = Counter(job for array in queue.arrays for task in array["jobs"] for job in task)
    assert set(sent) == {job.id for job in jobs} and set(sent.values()) == {1}, "every job sent exactly once"
    assert queue.arrays[-1]["jobs"] == [[jobs[-1].id]] and jobs[-1].kind == "aggregate"


def test_a_held_job_behind_a_failed_one_is_reported_blocked_without_being_sent(tmp_path):
    jobs = expand(SweepSpec.from_dict(WIDE))
    queue = _Queue()
    backend = _backend(tmp_path, queue, limit=2, max_array=8)
    masks = [job for job in jobs if job.kind == "mask"]
    level = next(job for job in jobs if job.kind == "validate" and masks[0].id in job.deps)
    for job in (masks[0], level, masks[1]):
        backend.submit(JobCall(job, tmp_path), tuple(dep for dep in job.deps if dep == masks[0].id))
    backend.flush()
    # One slot for the search, one kept for a feeder: the level and the other search are held.
    assert [task[0].job.id for _, tasks, _ in backend.held for task in tasks] == [level.id, masks[1].id]
    # The search fails: the level held back behind it is blocked, and never goes to Slurm; the other stays held.
    task = backend.task_of[masks[0].id]
    backend.failed_tasks.add(task)
    backend._new_failures = True
    blocked = backend._cancel_blocked()
    assert [outcome.job_id for outcome in blocked] == [level.id] and blocked[0].blocked
    assert [task[0].job.id for _, tasks, _ in backend.held for task in tasks] == [masks[1].id]


def test_the_dry_run_shows_the_split_and_the_limits(tmp_path):
    from dpcluster.sweeps.coordinator import run_sweep
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    printed = []
    backend = SlurmBackend(tmp_path / "logs", partition="debug", dry_run=printed.append,
                           limits=SiteLimits(4, (SubmitLimit("QOS q MaxSubmitJobsPerUser", 10, 3),)))
    backend.slots = lambda resources=None: None
    run_sweep(SweepSpec.from_dict(WIDE), tmp_path / "out", backend, "cpu", dry_run=True)
    text = "\n".join(printed)
    assert "# Slurm limits read: MaxArraySize 4 (tasks per array); QOS q MaxSubmitJobsPerUser 10 (3 queued now)" in text
    assert "# 61 task(s): 6 submitted now; the other 55 wait for room in the queue (tightest: QOS q " \
           "MaxSubmitJobsPerUser 10, 3 queued now)" in text, text[:2000]
    heads = [line for line in printed if line.startswith("# sbatch ")]
    # The searches first (each its own array: its level waits on it alone), six of them now.
    assert sum("[later: waits for room]" not in head for head in heads) == 6
    assert all(head.endswith(f"mask-random-s{i}-digits-convnet") for i, head in enumerate(heads[:6]))
    assert all("--array=0-4" not in line for line in text.splitlines())  # no array past 4 tasks
    assert not (tmp_path / "out").exists()


# -- on the real Slurm -------------------------------------------------------------------------------------------


@pytest.fixture
def submit_limit(slurm_cluster):
    """root's association held to a small MaxSubmitJobs for the test, then back to the session's."""
    from conftest import SLURM_MAX_SUBMIT_JOBS

    def set_limit(value: int) -> None:
        done = subprocess.run(["sacctmgr", "-i", "modify", "user", "root", "set", f"MaxSubmitJobs={value}"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    limit = 6
    set_limit(limit)
    deadline = time.time() + 30  # the controller hears of it from slurmdbd within a moment
    while read_limits().room() is None or min(cap.limit for cap in read_limits().submit) != limit:
        assert time.time() < deadline, read_limits()
        time.sleep(0.5)
    try:
        yield limit
    finally:
        set_limit(SLURM_MAX_SUBMIT_JOBS)


@contextlib.contextmanager
def _most_queued():
    """The most jobs root had in Slurm's queue at once while the block ran (``[count]``, filled in as it goes)."""
    most, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            listed = subprocess.run(["squeue", "--noheader", "--array", "--user", "root", "--format=%i"],
                                    capture_output=True, text=True).stdout.split()
            most[0] = max(most[0], len(listed))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield most
    finally:
        stop.set()
        watcher.join()


def test_a_sweep_several_times_the_site_s_limits_runs_to_the_end_with_no_process_following_it(submit_limit,
                                                                                              tmp_path, capsys):
    """The command submits what fits and returns; the feeder chain, all in Slurm, submits the rest as room frees
    up. The queue never holds more than the limit, no sbatch is refused, and every row lands exactly once."""
    from conftest import SLURM_MAX_ARRAY_SIZE

    from dpcluster.cli.main import main
    from dpcluster.sweeps.coordinator import observe

    limit = submit_limit
    sweep = {**WIDE, "seeds": list(range(12))}  # 12 dense validations, 12 searches, 12 levels, the aggregate
    spec = tmp_path / "wide.toml"
    SweepSpec.from_dict(sweep).save(spec)
    jobs = expand(SweepSpec.from_dict(sweep))
    assert len(jobs) == 37 > 5 * limit
    out = tmp_path / "out"
    with _most_queued() as most:
        # This node's two CPUs would pack the jobs into a few tasks; one task per job (as on a large partition)
        # is what meets the limits.
        code = main(["sweep", str(spec), "--backend", "slurm", "--partition", "debug", "--out", str(out),
                     "--device", "cpu", "--time-min", "10", "--feed-seconds", "2", "--pack", "never"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert "wait for room in Slurm's queue (association root/root MaxSubmitJobs 6)" in printed, printed
        assert "feeder job" in printed and "you may log off" in printed
        deadline = time.time() + 600
        # Followed as dpcluster status follows it (reading, changing nothing): done once every job is.
        while not all(s.state == "done" for s in observe(out).jobs.values()):
            assert time.time() < deadline, Counter(s.state for s in observe(out).jobs.values())
            time.sleep(2)
        assert main(["status", str(out)]) == 0
        status = capsys.readouterr().out
    assert most[0] <= limit, most
    states = observe(out).jobs
    assert all(s.attempts == 1 and s.error is None for s in states.values()), states
    assert "failed (" not in status, status
    rows = read_levels(out / "results").to_pylist()
    keys = sorted((r["method"], r["seed"], r["round"]) for r in rows)
    assert keys == sorted([("dense", s, 0) for s in range(12)] + [("random", s, 1) for s in range(12)])
    logs = " ".join(p.read_text(errors="replace") for p in (out / "logs").rglob("*_log.*"))
    assert "refused" not in logs.lower() and "AssocMaxSubmitJobLimit" not in logs
    assert "feeder: the next feeder is" in logs and "feeder: everything is submitted" in logs  # the chain, in Slurm
    feeders = subprocess.run(["sacct", "--noheader", "--allocations", "--parsable2", "--name", "dpcluster-feeder",
                              "--format=JobID,State", "--starttime", "now-1hour"], capture_output=True, text=True)
    assert feeders.stdout.count("COMPLETED") >= 2, feeders.stdout
    arrays = subprocess.run(["sacct", "--noheader", "--parsable2", "--format=JobID", "--name", "dpcluster",
                             "--starttime", "now-1hour"], capture_output=True, text=True).stdout.split()
    indices = [int(task.split("_")[1]) for task in arrays if "_" in task and task.split("_")[1].isdigit()]
    assert indices and max(indices) < SLURM_MAX_ARRAY_SIZE


def test_a_waiting_coordinator_submits_what_was_held_as_room_frees_up(submit_limit, tmp_path, capsys):
    """With --wait the command itself sends the held jobs as the queue empties: no feeder job is needed."""
    from dpcluster.cli.main import main
    from dpcluster.sweeps.manifest import Manifest

    limit = submit_limit
    sweep = {**WIDE, "seeds": list(range(6))}  # 19 jobs, a task each
    spec = tmp_path / "wide.toml"
    SweepSpec.from_dict(sweep).save(spec)
    out = tmp_path / "out"
    with _most_queued() as most:
        code = main(["sweep", str(spec), "--backend", "slurm", "--partition", "debug", "--out", str(out),
                     "--device", "cpu", "--time-min", "10", "--pack", "never", "--wait"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert most[0] <= limit, most
    states = Manifest.open(out / "manifest.json", read_only=True).jobs
    assert len(states) == 19 and all(s.state == "done" and s.attempts == 1 for s in states.values()), states
    assert not (out / "feeder.json").exists()
    rows = read_levels(out / "results").to_pylist()
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        [("dense", s) for s in range(6)] + [("random", s) for s in range(6)])
