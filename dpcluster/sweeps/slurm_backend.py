"""Jobs as Slurm jobs through submitit, with Slurm holding the sweep's graph: every job is submitted up front with
an ``afterok`` dependency on the Slurm jobs of its own dependencies, so Slurm starts each job when they are done
and the submitting process may leave. Jobs with the same dependencies and resources go in one job array (one
``sbatch``); each task is requeued on timeout or preemption (submitit), and resumes from its training progress.

Starting a Slurm job costs seconds (a fresh Python that imports torch and loads the data), which dwarfs a small
validation. So when a batch holds more jobs than the partition could ever run side by side (its CPUs over the
CPUs per job, from ``sinfo``), they are packed: each array task runs its share one after another in one process
and writes an outcome file per job. A task that had a failed job exits with an error, so Slurm never starts what
waits on it: those dependents are cancelled (``--kill-on-invalid-dep``, and by the backend itself as soon as the
failure is known) and reported as blocked, so the coordinator resubmits them with their dependency.

Submissions stay inside the site's limits (``slurm_limits``): arrays are split at MaxArraySize, and what does not
fit in the queue now is held, in submission order, and sent as room frees up — by this process while it follows
the sweep, or, once it leaves, by a feeder job (``feeder``). Following a sweep looks only at the tasks that run
or have ended (squeue says which), so its cost follows what runs, not the size of the queue."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError
from dpcluster.user_code import submitting_pythonpath
from dpcluster.sweeps.backends import Outcome, environment_failure, last_line
from dpcluster.sweeps.execute import JobCall, execute
from dpcluster.sweeps.scheduler_state import ENDED_BADLY, NOT_ITS_OWN, cancel_slurm, queued, slurm_states
from dpcluster.sweeps.slurm_limits import SiteLimits, read_limits, split_array


@dataclass(frozen=True)
class Resources:
    """What each job of a stage asks Slurm for."""

    cpus: int = 1
    gpus: int = 0
    mem_gb: float | None = None
    time_min: int = 60
    # Processes per job: validation jobs train data-parallel across them. Default: one per GPU.
    tasks: int | None = None
    partition: str | None = None

    @property
    def processes(self) -> int:
        return self.tasks or max(self.gpus, 1)


def parse_stage(text: str, kinds: list[str]) -> tuple[str, dict]:
    """``KIND:KEY=VALUE[,KEY=VALUE...]`` (e.g. ``distill:gpus=1,mem_gb=32,time_min=240``) as the stage and its
    resource overrides; a mistake is a one-line UserError."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in kinds:
        raise UserError(f"--stage {text!r}: expected KIND:KEY=VALUE,... with KIND one of {', '.join(kinds)}")
    types = {f.name: f.type for f in fields(Resources)}
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise UserError(f"--stage {text!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        cast = str if key == "partition" else float if key == "mem_gb" else int
        try:
            overrides[key] = cast(value)
        except ValueError:
            raise UserError(f"--stage {text!r}: {key} must be a {cast.__name__}, got {value!r}") from None
        if cast is not str and overrides[key] < 0:
            raise UserError(f"--stage {text!r}: {key} must be >= 0, got {value}")
    if not overrides:
        raise UserError(f"--stage {text!r}: no KEY=VALUE given")
    return kind, overrides


def parse_sbatch(text: str) -> tuple[str, str | bool]:
    """``KEY=VALUE`` (or a bare flag ``KEY``) for an sbatch option submitit does not name."""
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not key or any(c.isspace() for c in key):
        raise UserError(f"--sbatch {text!r}: expected KEY=VALUE, e.g. mail-type=END")
    return key, value if sep else True


@dataclass
class _Chain:
    """Jobs one task may run in turn: a job and those of its own experiment that wait on it alone."""

    calls: list
    resources: Resources
    experiment: str | None
    after: set  # job ids outside the chain it waits on
    awaited: bool = False  # a job of another chain waits on it


def task_groups(items: list[tuple[JobCall, tuple[str, ...]]], resources_of: Callable[[str], Resources],
                slots_of: Callable[[Resources], int | None]) -> list[tuple[Resources, list[list[JobCall]], set]]:
    """How queued jobs (each with the ids of the jobs it waits on) go to Slurm: arrays as (resources, the jobs of
    each task, the job ids the array waits on), in an order where every array comes after those it waits on.

    Where the partition runs every job of a size side by side, each job is a task of its own, waiting on exactly
    its own dependencies. Where there are more jobs than it could run at once (a small partition), a task
    starting costs more than it saves, so tasks run whole chains in turn (a mask search, then its levels'
    validations and analyses), and chains that wait on the same jobs share at most ``slots`` tasks; a chain
    another waits on (a distilled set several searches use) stays in a task of its own, so they start as soon
    as it ends."""
    from dpcluster.sweeps.jobs import get_kind

    counts = Counter(resources_of(call.job.kind) for call, _ in items)
    crowded = {res for res, count in counts.items() if (slots := slots_of(res)) and count > slots}
    in_batch = {call.job.id for call, _ in items}
    # job id -> the experiments of the jobs waiting on it (the sweep-wide aggregate, which waits on every job,
    # ends a task of its own and is left out).
    waiters: dict[str, set] = {}
    experiment_of = {}
    for call, after in items:
        job = call.job
        experiment_of[job.id] = job.experiment.experiment_id \
            if job.experiment is not None and get_kind(job.kind).scope == "experiment" else None
        for dep in after if experiment_of[job.id] is not None else ():
            waiters.setdefault(dep, set()).add(experiment_of[job.id])
    chains: list[_Chain] = []
    chain_of: dict[str, _Chain] = {}
    for call, after in items:
        job, res, experiment = call.job, resources_of(call.job.kind), experiment_of[call.job.id]
        inside = [dep for dep in after if dep in in_batch]
        hosts = {id(chain_of[dep]): chain_of[dep] for dep in inside}
        if res in crowded and experiment is not None and len(hosts) == 1:
            (host,) = hosts.values()
            if host.resources == res and host.experiment == experiment and \
                    all(waiters[dep] == {experiment} for dep in inside):
                host.calls.append(call)
                host.after |= {dep for dep in after if chain_of.get(dep) is not host}
                chain_of[job.id] = host
                continue
        chain = _Chain([call], res, experiment, set(after))
        chains.append(chain)
        chain_of[job.id] = chain
    for chain in chains:
        for dep in chain.after:
            if dep in chain_of and chain.experiment is not None:
                chain_of[dep].awaited = True
    groups: dict[tuple, list[_Chain]] = {}
    for i, chain in enumerate(chains):
        key = (chain.resources, frozenset(chain.after), i if chain.awaited else None)
        groups.setdefault(key, []).append(chain)
    out = []
    for (res, after, _), members in groups.items():
        # Chains dealt out in turn, so the heavy ones (searches with many rounds) spread over the tasks.
        count = min(slots_of(res), len(members)) if res in crowded else len(members)
        tasks = [[call for chain in members[i::count] for call in chain.calls] for i in range(count)]
        out.append((res, tasks, set(after)))
    return out


def _outcome_file(folder: Path, job_id: str) -> Path:
    return Path(folder) / "outcomes" / f"{job_id}.json"


def _failed(folder: Path, job_id: str) -> bool:
    path = _outcome_file(folder, job_id)
    return path.exists() and not json.loads(path.read_text())["ok"]


def _run_pack(calls: list[JobCall], folder: str) -> None:
    """One array task: run its jobs in turn; after each, its outcome file (written by the first process of a
    data-parallel job). A requeued task skips the jobs it already finished. Ends with an error if any of its
    jobs failed, so Slurm does not start what depends on it."""
    import signal

    import submitit

    def stop(signum, frame):
        # Slurm sends SIGTERM when it requeues, preempts or cancels a job; submitit ignores it (it checkpoints on
        # its own timeout signal). Every training keeps its progress on disk, so stopping at once loses little,
        # and the requeued task resumes there.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    first = submitit.JobEnvironment().global_rank == 0
    in_task = {call.job.id for call in calls}
    for call in calls:
        path = _outcome_file(Path(folder), call.job.id)
        if path.exists():
            continue
        if any(dep in in_task and _failed(Path(folder), dep) for dep in call.job.deps):
            # A job before it in this task failed: it cannot run, and that is not an attempt of its own.
            outcome = {"ok": False, "blocked": True, "error": "a job it depends on failed"}
        else:
            try:
                execute(call)
                outcome = {"ok": True}
            except Exception as error:  # noqa: BLE001 - one job's failure is its outcome; the pack goes on
                import traceback

                traceback.print_exc()
                outcome = {"ok": False, "error": last_line(error), "attempt_used": not environment_failure(error)}
        if first:
            text = json.dumps(outcome)
            write_atomic(path, lambda handle: handle.write(text.encode()))
    if first:
        failed = [call.job.name for call in calls if _failed(Path(folder), call.job.id)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(calls)} job(s) failed: {', '.join(failed)}")


def _requeueable():
    import submitit

    class ExecutePack(submitit.helpers.Checkpointable):
        """A pack as submitit runs it: on timeout or preemption, submitit calls ``checkpoint`` and requeues the
        same pack, which skips finished jobs and resumes the current one from its training progress."""

        def __call__(self, calls: list[JobCall], folder: str) -> None:
            _run_pack(calls, folder)

    return ExecutePack()


@dataclass
class _Pack:
    calls: list[JobCall]
    task: str  # its Slurm job or array task id
    after: tuple[str, ...]  # the Slurm ids it waits on (afterok)
    failed: bool = False  # a job of it failed: the task ends with an error
    started: bool = False  # seen other than pending: its outcome files are looked for from now on


def _last_error_line(path: Path) -> str | None:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line for line in lines if "Error" in line or "error" in line or "Killed" in line]
    return (errors or lines or [None])[-1]


class NoRoom(UserError):
    """sbatch refused a job for a submit limit (the queue is full for this user): not a mistake, no room now."""


# How sbatch words a refusal for a submit limit (Slurm's job_submit_limit, MaxJobCount, ...).
_NO_ROOM = ("submit limit", "qosmaxsubmitjob", "assocmaxsubmitjob", "maxsubmitjob", "grpsubmitjob",
            "maxjobcount", "temporarily unable to accept job")


@contextlib.contextmanager
def refusals_as_one_line(what: str):
    """sbatch's refusal (an unknown partition or option) as one line in Slurm's words: a UserError (NoRoom for a
    submit limit), with submitit's own copy of sbatch's message on stderr held back."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except (FailedJobError, FailedSubmissionError) as error:
        message = " ".join(str(error).split()) or "sbatch failed"
        kind = NoRoom if any(words in message.lower() for words in _NO_ROOM) else UserError
        raise kind(f"{what}: {message}") from None
    sys.stderr.write(held.getvalue())  # anything else said on the way


@dataclass
class SlurmBackend:
    folder: Path
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    array_parallelism: int = 64
    # Processes per job: validation jobs train data-parallel across them (one per GPU). Default: one per GPU.
    tasks_per_job: int | None = None
    # Resources of one stage (a job kind) that differ from the above: {"distill": {"gpus": 1, "mem_gb": 32}}.
    stages: dict = field(default_factory=dict)
    # Shell lines run before each job (module loads, environment activation).
    setup: tuple[str, ...] = ()
    # sbatch options submitit does not name, passed through as ``--KEY=VALUE``.
    sbatch: dict = field(default_factory=dict)
    # How often a task is requeued after a timeout or preemption before it counts as failed.
    requeues: int = 3
    # A folder to copy the code into (a git checkout's tracked files) before submitting: jobs run that copy, so
    # editing the checkout later changes nothing that was submitted.
    snapshot: Path | None = None
    # The user's own code (a package folder or a module file: a network's or a data set's factory), copied into
    # the snapshot beside dpcluster's; without a snapshot, found where it is.
    code: tuple[str, ...] = ()
    # Where the jobs look for Python code after their working folder: where this process found it (computed when
    # the backend is made, before a snapshot changes the working folder).
    pythonpath: tuple[str, ...] = field(default_factory=submitting_pythonpath)
    # Print what would be submitted (sbatch scripts with their dependencies) instead of submitting.
    dry_run: Callable[[str], None] | None = None
    # How often outcome files are looked for, and how often squeue (and the site's limits) are asked.
    poll_seconds: float = 0.5
    queue_seconds: float = 2.0
    # The site's limits on what may be queued (None: read them from the site, again every queue_seconds).
    limits: SiteLimits | None = None
    # "auto": where a partition runs fewer jobs at once than a batch holds, tasks run chains of jobs in turn;
    # "never": every job is a Slurm task of its own (one log each; what a large partition gets anyway).
    pack: str = "auto"
    # The feeder chain (see dpcluster.sweeps.feeder): its first interval, and each feeder job's time limit.
    feed_seconds: float = 60.0
    feeder_minutes: int = 15
    name: str = "slurm"
    resolves_dependencies = True
    # Called with {job id: (Slurm id, Slurm ids it waits on)} right after each sbatch, so the ids are on disk
    # before anything can stop us.
    on_started: object = None
    queue: list = field(default_factory=list, init=False, repr=False)  # (call, dependency job ids), not yet sent
    # Arrays (resources, tasks, job ids they wait on) in submission order, not sent yet for want of room.
    held: deque = field(default_factory=deque, init=False, repr=False)
    running: dict = field(default_factory=dict, init=False, repr=False)  # Slurm id -> _Pack, not yet over
    task_of: dict = field(default_factory=dict, init=False, repr=False)  # job id -> Slurm id
    failed_tasks: set = field(default_factory=set, init=False, repr=False)
    array_sizes: dict = field(default_factory=dict, init=False, repr=False)
    # When this backend runs inside a feeder job: its record; and what became of the feeder chain this run.
    feeding: object = field(default=None, init=False, repr=False)
    # The feeder job that sends what is held ("" while none was needed; None when the queue had no room for one).
    feeder: str | None = field(default="", init=False, repr=False)
    sent_tasks: int = field(default=0, init=False, repr=False)
    _unchecked: set = field(default_factory=set, init=False, repr=False)
    _new_failures: bool = field(default=False, init=False, repr=False)
    _slots: dict = field(default_factory=dict, init=False, repr=False)
    _queued: tuple = field(default=(float("-inf"), None), init=False, repr=False)
    _limits_read: tuple = field(default=(float("-inf"), None, 0), init=False, repr=False)
    _dry_arrays: int = field(default=0, init=False, repr=False)

    def processes(self, kind: str) -> int:
        return self.resources(kind).processes

    def resources(self, kind: str) -> Resources:
        base = Resources(self.cpus_per_task, self.gpus_per_task, self.mem_gb, self.time_min, self.tasks_per_job,
                         self.partition)
        return replace(base, **self.stages.get(kind, {}))

    def __post_init__(self):
        for path in self.code:
            if not Path(path).exists():
                raise UserError(f"--code {path}: no such file or folder")

    def _pythonpath_line(self) -> str:
        """The shell line that gives a job this process's Python path: the user's code is found there as here (a
        relative PYTHONPATH entry, or a module in the submitting folder, would otherwise be looked for in the job's
        working folder: the snapshot's, with one). Code copied into a snapshot comes first, from the copy."""
        code = [] if self.snapshot else [str(Path(path).resolve().parent) for path in self.code]
        paths = ":".join(dict.fromkeys([*code, *self.pythonpath]))
        return f"export PYTHONPATH={shlex.quote(paths)}${{PYTHONPATH:+:$PYTHONPATH}}"

    def executor(self, resources: Resources, dependency: str | None = None):
        import submitit

        executor = submitit.SlurmExecutor(folder=Path(self.folder).resolve() / "%j", max_num_timeout=self.requeues)
        params = {"time": resources.time_min, "cpus_per_task": resources.cpus,
                  "array_parallelism": self.array_parallelism, "job_name": "dpcluster",
                  # Slurm cancels a job whose dependency failed instead of keeping it pending forever.
                  "additional_parameters": {"kill-on-invalid-dep": "yes", **self.sbatch}}
        if resources.partition:
            params["partition"] = resources.partition
        for key in ("account", "qos", "constraint"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if resources.processes > 1:
            params["ntasks_per_node"] = resources.processes
        if resources.gpus:
            # One GPU per process; a job asking for several GPUs gets as many processes (DDP).
            params["gpus_per_task"] = 1 if resources.processes > 1 else resources.gpus
        if resources.mem_gb:
            params["mem"] = f"{int(resources.mem_gb * 1024)}MB"
        params["setup"] = [self._pythonpath_line(), *self.setup]
        if dependency:
            params["dependency"] = dependency
        try:
            executor.update_parameters(**params)
        except ValueError as error:
            raise UserError(f"Slurm parameters: {' '.join(str(error).split())}") from None
        return executor

    def slots(self, resources: Resources | None = None) -> int | None:
        """How many jobs of this size the partition can run side by side (its CPUs over the CPUs per job);
        None where packing does not apply (GPU or multi-process jobs) or ``sinfo`` cannot say. Asked once per
        size: a partition does not change between two submissions."""
        if self.pack == "never":
            return None
        resources = resources or self.resources("")
        if resources not in self._slots:
            self._slots[resources] = self._partition_slots(resources)
        return self._slots[resources]

    @staticmethod
    def _partition_slots(resources: Resources) -> int | None:
        import subprocess

        if resources.gpus or resources.processes > 1:
            return None
        command = ["sinfo", "--noheader", "--format=%C"] + \
            (["--partition", resources.partition] if resources.partition else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            # %C is allocated/idle/other/total CPUs, one line per partition.
            total = sum(int(line.split("/")[3]) for line in done.stdout.split())
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
        return max(1, total // max(1, resources.cpus)) if done.returncode == 0 and total else None

    # -- submitting ------------------------------------------------------------------------------------------------

    def submit(self, call: JobCall, after: tuple[str, ...] = ()) -> None:
        """Queue ``call``, to start when the jobs ``after`` (submitted before it, or earlier) have succeeded."""
        self.queue.append((call, tuple(after)))

    def outstanding(self) -> int:
        return len(self.queue) + self.held_jobs() + sum(len(pack.calls) for pack in self.running.values())

    def held_jobs(self) -> int:
        """Jobs not sent yet for want of room in the queue."""
        return sum(len(task) for _, tasks, _ in self.held for task in tasks)

    def _dependency(self, tasks: list[str]) -> str | None:
        """``afterok:`` on ``tasks``, naming a whole array where every task of it is there."""
        if not tasks:
            return None
        by_array: dict[str, list[str]] = {}
        for task in tasks:
            by_array.setdefault(task.split("_")[0], []).append(task)
        names = []
        for array, members in by_array.items():
            whole = self.array_sizes.get(array) == len(set(members)) and all("_" in m for m in members)
            names += [array] if whole else sorted(set(members))
        return "afterok:" + ":".join(names)

    # -- the site's limits -----------------------------------------------------------------------------------------

    def site_limits(self) -> SiteLimits:
        """The limits, read again once they are ``queue_seconds`` old (what is queued changes as jobs end)."""
        at, limits, _ = self._limits_read
        if limits is None or time.monotonic() - at > self.queue_seconds:
            limits = self.limits or read_limits(self.account, self.qos)
            self._limits_read = (time.monotonic(), limits, 0)
        return limits

    def room(self) -> int | None:
        """How many more tasks may be queued now (None: no limit), counting what was sent since the reading."""
        limits = self.site_limits()
        room = limits.room()
        return None if room is None else room - self._limits_read[2]

    def _count_sent(self, tasks: int, feeder: bool = False) -> None:
        at, limits, sent = self._limits_read
        self._limits_read = (at, limits, sent + tasks)
        if not feeder:
            self.sent_tasks += tasks

    # -- submitting ------------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the queued jobs, in the order they were queued (a job's dependencies are queued before it), as far
        as the site's limits let: arrays are split at MaxArraySize, and what does not fit in the queue now is held,
        to be sent as room frees up (by this process while it follows the sweep, or by a feeder job)."""
        if self.queue:
            items, self.queue = self.queue, []
            max_array = self.site_limits().max_array_size
            for resources, tasks, after in task_groups(items, self.resources, self.slots):
                for part in split_array(tasks, max_array):
                    self.held.append((resources, part, after))
        if self.dry_run is not None:
            self._print_arrays()
            return
        self._send_held()

    def _send_held(self) -> None:
        if not self.held:
            return
        from contextlib import nullcontext

        room = self.room()
        tasks_held = sum(len(tasks) for _, tasks, _ in self.held)
        # What cannot all go now leaves a slot free for the feeder job that will send the rest.
        budget = tasks_held if room is None or tasks_held <= room else max(0, room - 1)
        with self._snapshot() if self.snapshot and budget else nullcontext():
            while self.held and budget > 0:
                resources, tasks, after = self.held[0]
                part, rest = tasks[:budget], tasks[budget:]
                try:
                    self._send(part, resources, sorted({self.task_of[job_id] for job_id in after}))
                except NoRoom:
                    # The limits moved since they were read (other jobs of the user): wait for room.
                    self._limits_read = (float("-inf"), None, 0)
                    break
                except UserError:
                    # Refused for good (an unknown partition, a bad option): nothing held can go either; its jobs
                    # never started, so they stay pending with their attempts.
                    self.held.clear()
                    raise
                budget -= len(part)
                self._count_sent(len(part))
                if rest:
                    self.held[0] = (resources, rest, after)
                else:
                    self.held.popleft()

    def _send(self, groups: list[list[JobCall]], resources: Resources, after: list[str]) -> None:
        """One array of ``groups`` (one task each), after the Slurm jobs ``after``."""
        calls = [call for group in groups for call in group]
        executor = self.executor(resources, self._dependency(after))
        for call in calls:  # an earlier attempt's outcome is not this one's
            _outcome_file(self.folder, call.job.id).unlink(missing_ok=True)
        with refusals_as_one_line("Slurm refused the jobs"):
            ids = [job.job_id for job in executor.map_array(_requeueable(), groups,
                                                            [str(self.folder)] * len(groups))]
        self._sent(groups, ids, after)

    def _sent(self, groups: list[list[JobCall]], ids: list[str], after: list[str]) -> None:
        # squeue's answer from before this is stale: a task missing from it would be taken for one that ended.
        self._queued = (float("-inf"), None)
        if len(ids) > 1:
            self.array_sizes[ids[0].split("_")[0]] = len(ids)
        for group, task in zip(groups, ids):
            self.running[task] = _Pack(list(group), task, tuple(after))
            self.task_of.update({call.job.id: task for call in group})
        if self.on_started is not None:
            self.on_started({call.job.id: (task, tuple(after)) for group, task in zip(groups, ids)
                               for call in group})

    def leave(self) -> None:
        """The coordinator is leaving: what is still held goes to a feeder job (see dpcluster.sweeps.feeder)."""
        if self.dry_run is None and self.held:
            call = self.held[0][1][0][0]
            self.queue_feeder(Path(call.sweep_dir), call.device, self.held_jobs())

    def queue_feeder(self, sweep_dir: Path, device: str, waiting: int) -> None:
        """Make sure one feeder job is queued to send the ``waiting`` jobs held back: the one already pending, or
        a new one (this process's successor when it is the feeder)."""
        from dpcluster.sweeps.feeder import FeederRecord, feed, next_interval, own_job_id, read_record, write_record
        from dpcluster.sweeps.layout import SweepLayout

        path = SweepLayout(Path(sweep_dir)).feeder_file
        record = read_record(path)
        if record is not None and record.scheduler_id != own_job_id():
            known = (self._queue() or {}).get(record.scheduler_id)
            if known is not None and known.state == "PENDING":
                write_record(path, replace(record, waiting=waiting))
                self.feeder = record.scheduler_id
                return
        room = self.room()
        if room is not None and room < 1:
            self.feeder = None
            return
        interval, first = next_interval(self.feeding, self.feed_seconds, self.sent_tasks > 0)
        executor = self.executor(Resources(1, 0, None, self.feeder_minutes, None, self.partition))
        executor.update_parameters(job_name="dpcluster-feeder",
                                   additional_parameters={**self.sbatch, "begin": f"now+{max(1, round(interval))}"})
        # The feeder's own backend: these settings, none of this run's state, and the site's limits read afresh.
        settings = replace(self, dry_run=None, on_started=None, snapshot=None)
        try:
            with refusals_as_one_line("Slurm refused the feeder job"):
                job = executor.submit(feed, str(sweep_dir), settings, device)
        except NoRoom:  # limits this process could not read (a site that hides its associations) took the slot
            self.feeder = None
            return
        self._count_sent(1, feeder=True)
        write_record(path, FeederRecord(job.job_id, interval, first, time.time(), waiting))
        self.feeder = job.job_id

    def _print_arrays(self) -> None:
        """The dry run: the limits read, then every array in submission order with what it runs and waits on,
        marked "later" past what fits in the queue now; each distinct sbatch script is printed once."""
        from submitit.slurm.slurm import _make_sbatch_string

        limits, room = self.site_limits(), self.room()
        self.dry_run("# Slurm limits read: " + "; ".join(limits.describe()))
        total = sum(len(tasks) for _, tasks, _ in self.held)
        now = total if room is None or total <= room else max(0, room - 1)
        arrays, budget = [], now
        for resources, tasks, after in self.held:  # cut where a submission would (see _send_held)
            for part in (tasks[:budget], tasks[budget:]) if 0 < budget < len(tasks) else (tasks,):
                arrays.append((resources, part, after, budget <= 0))
                budget -= len(part)
        self.held = deque()
        if now < total:
            tightest = limits.tightest()
            self.dry_run(f"# {total} task(s): {now} submitted now; the other {total - now} wait for room in the queue "
                         f"(tightest: {tightest.what} {tightest.limit}, {tightest.used} queued now), sent by a feeder "
                         f"job every {self.feed_seconds:g} s at first, as jobs end")
        else:
            self.dry_run(f"# {total} task(s), all submitted now")
        shown: set = set()
        for resources, groups, after, later in arrays:
            self._dry_arrays += 1
            array = f"<{self._dry_arrays}>"
            ids = [f"{array}_{i}" for i in range(len(groups))] if len(groups) > 1 else [array]
            waits = sorted({self.task_of[job_id] for job_id in after})
            executor = self.executor(resources, self._dependency(waits))
            jobs = "; ".join(f"task {i}: " + _names([call.job.name for call in group])
                             for i, group in enumerate(groups[:4])) + \
                (f"; and {len(groups) - 4} more task(s)" if len(groups) > 4 else "")
            when = " [later: waits for room]" if later else ""
            self.dry_run(f"# sbatch {array}" + (f", after {_names(waits)}" if waits else "") + f"{when} -- {jobs}")
            script = _make_sbatch_string(command=executor._submitit_command_str, folder=executor.folder,
                                         map_count=len(groups) if len(groups) > 1 else None, **executor.parameters)
            # The script once per shape (what differs between arrays of a stage is only their ids).
            shape = "\n".join(line for line in script.splitlines()
                              if not line.startswith(("#SBATCH --array", "#SBATCH --dependency")))
            if shape not in shown:
                shown.add(shape)
                self.dry_run(script)
            elif self._dependency(waits):
                self.dry_run(f"#SBATCH --dependency='{self._dependency(waits)}'")
            self._sent(groups, ids, waits)

    def _snapshot(self) -> contextlib.AbstractContextManager:
        """submitit's RsyncSnapshot of the checkout dpcluster runs from: jobs submitted inside it start in the
        copy (their working folder), where Python finds the copied package first."""
        import subprocess

        import submitit

        import dpcluster

        root = Path(dpcluster.__file__).resolve().parents[1]
        inside = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                                text=True)
        if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != root:
            raise UserError(f"--snapshot copies a git checkout of dpcluster; {root} is not one (an installed "
                            f"package is already fixed until it is upgraded)")
        if not submitit.helpers.RsyncSnapshot.available():
            raise UserError("--snapshot needs rsync on this machine")
        return _with_code(submitit.helpers.RsyncSnapshot(snapshot_dir=Path(self.snapshot).resolve(), root_dir=root),
                          self.code)

    # -- following -------------------------------------------------------------------------------------------------

    def attach(self, calls: list[JobCall], scheduler_id: str, after: tuple[str, ...] = ()) -> None:
        """Follow a Slurm job an earlier run submitted for ``calls`` (queued, running or ended: its outcome
        files, or its end without them, are read as for a job submitted now)."""
        self.running[scheduler_id] = _Pack(list(calls), scheduler_id, tuple(after))
        self.task_of.update({call.job.id: scheduler_id for call in calls})
        self._unchecked.update(after)
        self._queued = (float("-inf"), None)

    def _queue(self) -> dict | None:
        at, known = self._queued
        if known is None or time.monotonic() - at > self.queue_seconds:
            self._queued = (time.monotonic(), queued())
        return self._queued[1]

    def wait(self) -> list[Outcome]:
        while True:
            outcomes = self.poll()
            if outcomes or not (self.running or self.held):
                return outcomes
            time.sleep(self.poll_seconds)

    def poll(self, cancel_blocked: bool = True) -> list[Outcome]:
        """The outcomes of submitted jobs that ended since the last look, without waiting (and what was held sent,
        as far as room has freed up). With ``cancel_blocked``, jobs still queued behind a failed one are
        cancelled and reported blocked. Only tasks that are running or have left the queue are looked at: a
        pending one has written nothing, so following a large queue costs what runs, not what waits."""
        self._learn_earlier_failures()
        in_queue = self._queue()
        outcomes, silent = [], []
        for pack in list(self.running.values()):
            known = in_queue.get(pack.task) if in_queue is not None else None
            if known is not None and known.state == "PENDING" and not pack.started:
                continue
            pack.started = True  # a requeued task may have written outcomes before it went back to pending
            # Whether it is still queued is read before its outcome files, so none written last is missed.
            ended = in_queue is not None and known is None
            outcomes += self._reported(pack)
            if pack.calls and ended:
                silent.append(pack)
        if silent:  # how they ended, and how what they waited on ended: one sacct for all of them
            states = slurm_states([task for pack in silent for task in (pack.task, *pack.after)])
            for pack in silent:
                outcomes += self._ended_without_outcome(pack, states)
                pack.calls = []
        for pack in list(self.running.values()):
            if pack.failed and pack.task not in self.failed_tasks:
                self.failed_tasks.add(pack.task)
                self._new_failures = True
            if not pack.calls:
                del self.running[pack.task]
        if cancel_blocked:
            outcomes += self._cancel_blocked()
        if self.held and self.dry_run is None:
            self._send_held()
        return outcomes

    def _learn_earlier_failures(self) -> None:
        """Which of the Slurm jobs that followed jobs wait on ended without success (asked once, on a re-run:
        those submitted now are followed as they go)."""
        if not self._unchecked:
            return
        states = slurm_states(sorted(self._unchecked - set(self.running)))
        failed = {task for task, state in states.items() if state.state in ENDED_BADLY}
        self._new_failures |= bool(failed - self.failed_tasks)
        self.failed_tasks |= failed
        self._unchecked = set()

    def _cancel_blocked(self) -> list[Outcome]:
        """Jobs queued (or held) after a Slurm job that failed (or will: one of its jobs failed) can never start:
        cancel them, and their own dependents in turn. Looked for only when a failure is new."""
        if not self._new_failures:
            return []
        self._new_failures = False
        outcomes = []
        while blocked := [pack for pack in self.running.values() if set(pack.after) & self.failed_tasks]:
            cancel_slurm([pack.task for pack in blocked])
            for pack in blocked:
                outcomes += [Outcome(call.job.id, False, "a job it depends on failed", blocked=True)
                             for call in pack.calls]
                self.failed_tasks.add(pack.task)
                del self.running[pack.task]
        # Held arrays that wait on a failed job, or on a held job that is blocked, are dropped the same way.
        dropped: set = set()
        kept = deque()
        for resources, tasks, after in self.held:
            if any(self.task_of.get(job_id) in self.failed_tasks or job_id in dropped for job_id in after):
                for task in tasks:
                    outcomes += [Outcome(call.job.id, False, "a job it depends on failed", blocked=True)
                                 for call in task]
                    dropped.update(call.job.id for call in task)
            else:
                kept.append((resources, tasks, after))
        self.held = kept
        return outcomes

    def _log(self, task: str):
        from submitit.core.utils import JobPaths

        return JobPaths(Path(self.folder).resolve() / "%j", job_id=task, task_id=0)

    def _reported(self, pack: _Pack) -> list[Outcome]:
        """The outcomes the pack's jobs have written so far (taken off the pack)."""
        outcomes = []
        for call in list(pack.calls):
            path = _outcome_file(self.folder, call.job.id)
            if path.exists():
                written = json.loads(path.read_text())
                blocked = written.get("blocked", False)
                error = None if written["ok"] else written["error"] if blocked else \
                    f"{written['error']} (Slurm job {pack.task}; log {self._log(pack.task).stdout})"
                pack.failed |= not written["ok"]
                outcomes.append(Outcome(call.job.id, written["ok"], error, blocked,
                                        attempt_used=written.get("attempt_used", True)))
                pack.calls.remove(call)
        return outcomes

    def _ended_without_outcome(self, pack: _Pack, states: dict) -> list[Outcome]:
        """Outcomes for the jobs of a task that left the queue without reporting them (``states``: sacct's view
        of it and of what it waited on): blocked if a job it waited on failed (Slurm cancelled it), otherwise
        failed (killed, out of memory, out of time). Either way the task did not complete, for its dependents."""
        pack.failed = True
        if any(task in self.failed_tasks or task in states and states[task].state in ENDED_BADLY
               for task in pack.after):
            return [Outcome(call.job.id, False, "a job it depends on failed", blocked=True) for call in pack.calls]
        state = states.get(pack.task)
        log = self._log(pack.task).stderr
        line = _last_error_line(log)
        why = f"Slurm {state.state}" if state is not None and state.state else "ended without reporting"
        error = f"{why}{': ' + line if line else ''} (Slurm job {pack.task}; log {log})"
        # The task runs its jobs in turn: the first without an outcome was running when it ended; the ones after
        # it never started, which is not an attempt of theirs.
        running, *after = pack.calls
        # Ended from outside (its node failed, it was cancelled or preempted): not the job's own failure.
        own = state is None or state.state not in NOT_ITS_OWN
        return [Outcome(running.job.id, False, error, attempt_used=own)] + \
            [Outcome(call.job.id, False, f"never started: {error}", blocked=True) for call in after]


def _names(names: list[str], most: int = 3) -> str:
    """A few names, then how many more (a dry run's line per array stays one line)."""
    return ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")


@contextlib.contextmanager
def _with_code(snapshot, code: tuple[str, ...]):
    """Inside ``snapshot`` (jobs submitted there start in its folder), with the user's ``code`` copied beside
    dpcluster's, so the jobs import the code as it was when they were submitted."""
    import shutil

    with snapshot:
        for path in map(Path, code):
            target = Path(snapshot.snapshot_dir) / path.name
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, target)
        yield
