"""The coordinator: expands a sweep, records its jobs in the sweep folder, and starts each job as soon as its own
dependencies are done (no stage barriers). On a scheduler that holds the graph itself (Slurm, Ray), every job
is handed over at once with its dependencies, and following the sweep to its end is optional (Slurm). Running
it again resumes: finished jobs are skipped, jobs still queued or running are followed instead of submitted
twice, and failed ones are retried up to ``max_retries`` together with the jobs that waited on them. Another
spec run into the same folder reuses every job the two have in common (ids are content hashes); jobs whose
settings changed are new jobs beside the old ones.

A backend may hold jobs back (Slurm, where the site's limits leave no room in the queue): a held job is running,
and an attempt, only from when the backend says it sent it; what is still held when the coordinator leaves the
backend hands on (Slurm: to a feeder job). One coordinator runs a folder at a time (``coordinator_lock``)."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dpcluster.sweeps.backends import (
    Backend, FollowsEarlierRuns, Outcome, SaysWhenStarted, last_line, processes_for)
from dpcluster.sweeps.execute import JobCall
from dpcluster.sweeps.graph import expand
from dpcluster.sweeps.jobs import Job, get_kind
from dpcluster.sweeps.layout import SweepLayout
from dpcluster.sweeps.manifest import JobState, Manifest, coordinator_lock
from dpcluster.sweeps.spec import SweepSpec


def prepare(sweep: SweepSpec, sweep_dir: Path, read_only: bool = False,
            undo_cancel: bool = True) -> tuple[list[Job], Manifest]:
    """The sweep's jobs and the folder's manifest, with the spec saved as the folder's current one (read-only:
    nothing written, for a dry run or a look)."""
    layout = SweepLayout(Path(sweep_dir))
    jobs = expand(sweep)
    if not read_only:
        layout.root.mkdir(parents=True, exist_ok=True)
        if undo_cancel:  # the user running the sweep again undoes a cancel (a feeder job does not)
            layout.cancel_file.unlink(missing_ok=True)
        sweep.save(layout.spec_file)
    manifest = Manifest.open(layout.manifest_file, read_only)
    for job in jobs:
        manifest.add(job.id, job.name, job.kind)
    manifest.save()
    return jobs, manifest


# How far a job has got, for what waits on it: nothing yet, handed to a backend, done.
_WAITING, _SENT, _DONE = 0, 1, 2

# A failed job is tried again after RETRY_SECONDS, doubling with each failure in the same run up to RETRY_MAX
# (a job that fails at once would otherwise burn its attempts in a tight loop).
RETRY_SECONDS, RETRY_MAX = 1.0, 60.0


class _Run:
    """One run of the coordinator over a sweep's jobs. What may start is found from counts, not by walking the
    sweep: each job counts its dependencies that are not done, and those neither done nor handed to a backend;
    when a count reaches zero the job joins a queue of jobs that may be ready (in planning order, so what a job
    waits on is always sent before it). Every change of a job's progress updates the counts of the jobs that
    wait on it, so a sweep of n jobs costs O(n) bookkeeping in all, not O(n) per job."""

    def __init__(self, sweep: SweepSpec, sweep_dir: Path, backend: Backend, device: str,
                 say: Callable[[str], None], on_end: Callable[[Job], None] | None, read_only: bool = False,
                 undo_cancel: bool = True, retry_failed: bool = False):
        self.sweep, self.layout, self.backend, self.device = sweep, SweepLayout(Path(sweep_dir)), backend, device
        self.say, self.on_end, self.read_only = say, on_end or (lambda job: None), read_only
        self.jobs, self.manifest = prepare(sweep, sweep_dir, read_only, undo_cancel)
        self.by_id = {job.id: job for job in self.jobs}
        self.index = {job.id: i for i, job in enumerate(self.jobs)}
        self.submitted: set[str] = set()
        self.dependents: dict[str, list[int]] = {job.id: [] for job in self.jobs}
        for i, job in enumerate(self.jobs):
            for dep in job.deps:
                self.dependents[dep].append(i)
        self.redo = self._lost_outputs()
        if retry_failed:
            self.manifest.forgive([job.id for job in self.jobs if self.out_of_attempts(job.id)])
        # Failures of each job in this run, and failed jobs waiting for their time to be tried again.
        self.failures: Counter = Counter()
        self.later: list[tuple[float, int]] = []
        self.progress = {job.id: _DONE if self.state(job.id) == "done" else _WAITING for job in self.jobs}
        self.not_done = [sum(self.progress[dep] < _DONE for dep in job.deps) for job in self.jobs]
        self.not_sent = [sum(self.progress[dep] < _SENT for dep in job.deps) for job in self.jobs]
        self.ready: list[int] = []
        # A backend that says when a job's attempt begins (the local backend runs jobs in turn; Slurm may hold
        # them back for want of room) makes it running, and an attempt, only then.
        self.says_when_started = isinstance(backend, SaysWhenStarted)
        if self.says_when_started:
            backend.on_started = self.manifest.started
        self.holds_back = isinstance(backend, FollowsEarlierRuns)

    def _lost_outputs(self) -> list[str]:
        """Done jobs whose outputs are gone (a result deleted, a scratch file system wiped) go back to pending, to
        run again: every job that is the sweep's result (a level's row, an analysis), and an intermediate one (a
        mask search, a pair) where a job after it still has to run. The aggregate goes again with any of them."""
        lost = []
        for i in range(len(self.jobs) - 1, -1, -1):  # a job's dependents come after it
            job = self.jobs[i]
            kind = get_kind(job.kind)
            if self.state(job.id) != "done":
                continue
            needed = not kind.intermediate or any(self.state(self.jobs[d].id) != "done" for d in self.dependents[job.id])
            if needed and not kind.outputs_present(job, self.layout):
                self.manifest.jobs[job.id].state = "pending"
                lost.append(job.id)
        if lost:
            for job in self.jobs:
                if get_kind(job.kind).scope == "sweep" and self.state(job.id) == "done":
                    self.manifest.jobs[job.id].state = "pending"
                    lost.append(job.id)
            self.manifest.record(lost)
        return lost

    def out_of_attempts(self, job_id: str) -> bool:
        """Whether ``job_id`` failed on every attempt it had (it starts again only with ``--retry-failed``)."""
        state = self.manifest.jobs[job_id]
        return state.state == "failed" and state.attempts > self.sweep.max_retries

    # -- progress and the ready queue ------------------------------------------------------------------------------

    def _advance(self, job_id: str, progress: int) -> None:
        """Record how far ``job_id`` has got and update the counts of the jobs that wait on it."""
        before = self.progress[job_id]
        if before == progress:
            return
        self.progress[job_id] = progress
        for i in self.dependents[job_id]:
            if (before < _DONE) != (progress < _DONE):
                self.not_done[i] += 1 if progress < _DONE else -1
            if (before < _SENT) != (progress < _SENT):
                self.not_sent[i] += 1 if progress < _SENT else -1
            if self._startable(i):
                heapq.heappush(self.ready, i)

    def _startable(self, i: int) -> bool:
        """Whether job ``i``'s dependencies let it start: all done, or (on a backend that starts a job when its
        dependencies end) all done or handed over."""
        return self.not_done[i] == 0 or (self.backend.resolves_dependencies and self.not_sent[i] == 0)

    def _requeue(self, job_id: str) -> None:
        """``job_id`` may start again (it never ran)."""
        i = self.index[job_id]
        if self._startable(i):
            heapq.heappush(self.ready, i)

    def _retry_later(self, job_id: str) -> None:
        """``job_id`` failed: it is tried again after a wait that doubles with each failure in this run, at most
        ``max_retries`` times a run (its attempts, counted across runs, have the same limit)."""
        self.failures[job_id] += 1
        if self.failures[job_id] > self.sweep.max_retries:
            return
        wait = min(RETRY_MAX, RETRY_SECONDS * 2 ** (self.failures[job_id] - 1))
        heapq.heappush(self.later, (time.monotonic() + wait, self.index[job_id]))

    def _due(self) -> None:
        """Failed jobs whose wait is over join the ready queue."""
        while self.later and self.later[0][0] <= time.monotonic():
            heapq.heappush(self.ready, heapq.heappop(self.later)[1])

    # -- following what earlier runs submitted ---------------------------------------------------------------------

    def reattach(self, cancel_blocked: bool = True) -> None:
        """Jobs an earlier run left "running": those the scheduler knows (their ids are in the manifest) are
        followed again, not submitted twice, and what they reported since is taken in; the others run again.
        With ``cancel_blocked``, jobs still queued behind one that failed are cancelled, to be resubmitted."""
        attachable: dict[str, list[JobCall]] = {}
        after: dict[str, tuple[str, ...]] = {}
        follows = self.holds_back
        for job in self.jobs:
            state = self.manifest.jobs[job.id]
            if state.state == "cancelled":  # stopped by dpcluster cancel: run it again
                state.state = "pending"
            if state.state != "running":
                continue
            if state.scheduler_id is not None and follows:
                attachable.setdefault(state.scheduler_id, []).append(JobCall(job, self.layout.root, self.device))
                after[state.scheduler_id] = tuple(state.after or ())
            else:
                # Left running by a run that was stopped (Ctrl+C, kill -9, a lost machine): it was interrupted,
                # which is not an attempt of its own.
                self.manifest.release(job.id, error="interrupted")
        for scheduler_id, calls in attachable.items():
            self.backend.attach(calls, scheduler_id, after[scheduler_id])
            for call in calls:
                self.submitted.add(call.job.id)
                self._advance(call.job.id, _SENT)
        if attachable:
            for outcome in self.backend.poll(cancel_blocked):
                self.finish(outcome)
            still = {scheduler_id: [call for call in calls if call.job.id in self.submitted]
                     for scheduler_id, calls in attachable.items()}
            still = {scheduler_id: calls for scheduler_id, calls in still.items() if calls}
            if still:
                self.say(f"following {sum(map(len, still.values()))} job(s) submitted earlier, still queued or "
                         f"running ({self.backend.name} {_few(sorted(still))})")
        self.ready = [i for i, job in enumerate(self.jobs) if self._startable(i) and self.may_start(job)]
        heapq.heapify(self.ready)

    # -- starting and ending jobs ----------------------------------------------------------------------------------

    def state(self, job_id: str) -> str:
        return self.manifest.jobs[job_id].state

    def may_start(self, job: Job) -> bool:
        state = self.manifest.jobs[job.id]
        # A job gets one attempt plus max_retries retries, counted across runs of the sweep.
        return job.id not in self.submitted and state.state != "done" and state.attempts <= self.sweep.max_retries

    def settle(self, job: Job) -> bool | None:
        """Finish ``job`` here if its kind can without a backend: True if it did, None if that failed (an
        attempt, like a failed job), False if the job needs a backend."""
        try:
            kind = get_kind(job.kind)
            settled = kind.settle(job, self.layout, processes_for(self.backend, job.kind) if kind.data_parallel else 1)
        except Exception as error:  # noqa: BLE001 - recorded like a failed job, retried up to the limit
            from dpcluster.sweeps.backends import environment_failure

            if stop := environment_failure(error):  # a full or read-only disk here: the run stops
                raise stop from error
            self.manifest.set(job.id, "running")
            self.finish(Outcome(job.id, False, last_line(error)))
            return None
        if settled:
            self.manifest.set(job.id, "done")
            self._advance(job.id, _DONE)
            self.on_end(job)
        return settled

    def dispatch(self) -> bool:
        """Settle or submit every job that may start now; whether anything changed."""
        if self.layout.cancel_file.exists():  # dpcluster cancel: start nothing more
            return False
        changed, sent = False, Counter()
        self._due()
        while self.ready:
            i = heapq.heappop(self.ready)
            job = self.jobs[i]
            if not self.may_start(job) or not self._startable(i):
                continue  # queued twice, or its state changed since it was queued
            # Settling writes files (a level's record, the aggregate): not in a dry run.
            deps_done = self.not_done[i] == 0
            if deps_done and not self.read_only and self.settle(job) is not False:
                changed = True
                continue
            if not self.says_when_started:
                self.manifest.set(job.id, "running")
            self.submitted.add(job.id)
            self._advance(job.id, _SENT)
            # It waits only on what is not done yet (a done job's scheduler entry may have ended badly for
            # another job it ran beside).
            waits_on = tuple(dep for dep in job.deps if self.progress[dep] < _DONE)
            self.backend.submit(JobCall(job, self.layout.root, self.device), waits_on)
            sent[job.kind] += 1
            changed = True
        if sent:
            kinds = ", ".join(f"{count} {kind}" for kind, count in sent.items())
            self.say(f"{sum(sent.values())} job(s) to {self.backend.name}: {kinds}")
        return changed

    def finish(self, outcome: Outcome) -> None:
        job_id = outcome.job_id
        self.submitted.discard(job_id)
        began = self.state(job_id) == "running"  # its attempt began (it was started, or sent to a scheduler)
        if not outcome.ok and self.layout.cancel_file.exists():
            self._give_back(job_id, began, "cancelled", "cancelled by dpcluster cancel")
            self._advance(job_id, _WAITING)
            return
        if outcome.blocked:  # it never ran: a job it waits on failed; it goes again with that job's retry
            if began:
                self.manifest.release(job_id)
            self._advance(job_id, _WAITING)
            self._requeue(job_id)
            return
        self.on_end(self.by_id[job_id])
        if outcome.ok:
            self.manifest.set(job_id, "done")
            self._advance(job_id, _DONE)
            return
        if outcome.attempt_used:
            self.manifest.set(job_id, "failed", outcome.error)
        else:  # ended from outside (a node failure, a cancellation, a full disk): not an attempt of its own
            self._give_back(job_id, began, "failed", outcome.error)
        self._advance(job_id, _WAITING)
        self.say(f"failed: {self.manifest.jobs[job_id].name}: {outcome.error}" +
                 ("" if outcome.attempt_used else " (no attempt used)"))
        self._retry_later(job_id)

    def _give_back(self, job_id: str, began: bool, state: str, error: str | None) -> None:
        if began:
            self.manifest.release(job_id, state, error)
        else:
            self.manifest.set(job_id, state, error)

    def _interrupted(self) -> None:
        """This run is stopping (Ctrl+C): the jobs it was running here were interrupted, not failed."""
        for job_id in self.submitted:
            state = self.manifest.jobs[job_id]
            if state.state == "running" and state.scheduler_id is None:
                self.manifest.release(job_id, error="interrupted")

    def run(self, follow: bool = True) -> Manifest:
        self.reattach()
        if self.redo:
            self.say(f"{len(self.redo)} finished job(s) lost their outputs and run again: "
                     f"{_few(sorted(self.manifest.jobs[job_id].name for job_id in self.redo), 4)}")
        try:
            while True:
                while self.dispatch():
                    pass
                if self.holds_back:
                    self.backend.flush()
                if not follow:
                    return self.manifest
                if not self.backend.outstanding():
                    if not self.later:
                        return self.manifest
                    # Nothing runs but failed jobs waiting for their retry: wait for the first of them.
                    time.sleep(max(0.0, self.later[0][0] - time.monotonic()))
                    continue
                for outcome in self.backend.wait():
                    self.finish(outcome)
        except (KeyboardInterrupt, OSError):
            # Stopped (Ctrl+C), or the machine cannot take writes (a full disk): what ran here was interrupted.
            try:
                self._interrupted()
            except OSError:
                pass  # the disk that stopped the run may not take the manifest's line either: the next run will
            raise


def _few(names: list[str], most: int = 8) -> str:
    """Up to ``most`` names, then how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most:,} more" if len(names) > most else "")


def run_sweep(sweep: SweepSpec, sweep_dir: Path, backend: Backend, device: str = "auto",
              say: Callable[[str], None] = lambda text: None,
              on_end: Callable[[Job], None] | None = None, follow: bool = True, dry_run: bool = False,
              retry_failed: bool = False) -> Manifest:
    """Run the sweep's jobs that are not done into ``sweep_dir``; ``say`` tells what is submitted and what
    failed, ``on_end`` is called with every job that ends (done or failed). Without ``follow``, returns once
    everything is submitted (on a backend that holds the graph: Slurm). ``dry_run`` writes nothing (the backend
    shows what it would submit). One coordinator runs a folder at a time (another is waited for a while, then
    named in a UserError). ``retry_failed`` gives jobs that failed on every attempt they had their attempts
    again."""
    if dry_run:
        return _Run(sweep, sweep_dir, backend, device, say, on_end, read_only=True).run(follow=False)
    with coordinator_lock(sweep_dir):
        return run_locked(sweep, sweep_dir, backend, device, say, on_end, follow, retry_failed=retry_failed)


def run_locked(sweep: SweepSpec, sweep_dir: Path, backend: Backend, device: str = "auto",
               say: Callable[[str], None] = lambda text: None, on_end: Callable[[Job], None] | None = None,
               follow: bool = True, undo_cancel: bool = True, retry_failed: bool = False) -> Manifest:
    """``run_sweep`` for a caller that holds the folder's coordinator lock (a feeder job)."""
    run = _Run(sweep, sweep_dir, backend, device, say, on_end, undo_cancel=undo_cancel, retry_failed=retry_failed)
    try:
        return run.run(follow)
    finally:
        if run.holds_back:
            backend.leave()  # what it still holds back goes to a feeder job
        run.manifest.close()


def observe(sweep_dir: Path) -> Manifest:
    """The folder's manifest brought up to date with what its Slurm jobs reported since it was last written, for
    display: nothing is saved, cancelled or submitted."""
    from dpcluster.sweeps.slurm_backend import SlurmBackend

    layout = SweepLayout(Path(sweep_dir))
    manifest = Manifest.open(layout.manifest_file, read_only=True)
    if not layout.spec_file.exists() or not any(s.state == "running" and s.scheduler_id
                                                for s in manifest.jobs.values()):
        return manifest
    run = _Run(SweepSpec.load(layout.spec_file), layout.root, SlurmBackend(layout.logs_dir), "auto",
               lambda text: None, None, read_only=True)
    run.reattach(cancel_blocked=False)
    return run.manifest


def unfinished(sweep: SweepSpec, sweep_dir: Path) -> list[JobState]:
    """The states of the sweep's jobs that are not done in ``sweep_dir`` (all of them, pending, in a new
    folder), with each one's last error."""
    manifest = Manifest.open(SweepLayout(Path(sweep_dir)).manifest_file, read_only=True)
    states = [manifest.jobs.get(job.id) or JobState(job.name, job.kind) for job in expand(sweep)]
    return [state for state in states if state.state != "done"]


def current_job_ids(sweep_dir: Path) -> list[str] | None:
    """The job ids of the spec last run into ``sweep_dir`` (its results are those files; earlier specs' stay
    beside them), or None for a folder without a spec (every file counts)."""
    spec_file = SweepLayout(Path(sweep_dir)).spec_file
    return [job.id for job in expand(SweepSpec.load(spec_file))] if spec_file.exists() else None


def sweep_records(sweep: SweepSpec, sweep_dir: Path) -> list:
    """The round records of the sweep's validated levels found in ``sweep_dir`` (of this spec's jobs only)."""
    from dpcluster.results.levels import level_records, read_levels

    names = [job.id for job in expand(sweep)]
    return level_records(read_levels(SweepLayout(Path(sweep_dir)).results_dir, names))
