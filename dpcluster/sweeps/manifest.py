"""The sweep folder's record of its jobs and their states: a snapshot and a journal of the changes since.

    SWEEP/manifest.json      {"generation": g, "jobs": {job id: state}}: every job's state when the journal was
                             last folded in
    SWEEP/manifest.journal   a header line {"generation": g}, then one line per change since that snapshot:
                             {"jobs": {job id: the job's whole state after the change}}

A change costs one appended line, whatever the sweep's size (rewriting one JSON file per change made a sweep of
n jobs cost O(n^2): 40 minutes of rewriting for the papers' 4,556 jobs). Lines hold whole states, not
differences, so replaying one twice changes nothing. A line is written with one ``write`` call and ends with a
newline; a line without one (the writer died mid-line) is the change it was writing, and is dropped.

The journal is folded into a new snapshot when the manifest is opened for writing and whenever the journal has
grown past the snapshot's size, so folding costs O(1) per change on average. Folding writes the snapshot of the
next generation (temporary name, rename), then a new journal of that generation (likewise). A journal of an older
generation than the snapshot has been folded already and is not replayed: so a writer killed between the two
renames loses nothing, and a reader (which opens the journal before it reads the snapshot, and keeps reading the
file it opened) sees the states of one moment, never a mix of two.

One process writes at a time: the coordinator holds ``SWEEP/coordinator.lock`` (see :func:`coordinator_lock`)
while it changes states; readers (``dpcluster status``) need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError

# "cancelled": stopped by dpcluster cancel; the next run of the sweep starts it again.
STATES = ("pending", "running", "done", "failed", "cancelled")

# The journal is folded into the snapshot once it is this much larger than the snapshot (and at least FOLD_BYTES).
FOLD_RATIO = 1.0
FOLD_BYTES = 1 << 20


@dataclass
class JobState:
    name: str
    kind: str
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    # The scheduler's id for the job's current attempt (a Slurm job or array task id), so a later run of the
    # coordinator can follow the job instead of submitting it again.
    scheduler_id: str | None = None
    # The scheduler's ids of the jobs that attempt waits on (Slurm afterok), so a later run can tell that it
    # will never start when one of them failed.
    after: list[str] | None = None


def journal_file(path: Path) -> Path:
    return Path(path).with_suffix(".journal")


def _replay(path: Path) -> tuple[dict[str, JobState], int, int, bool]:
    """The states the snapshot and its journal hold, the snapshot's generation, the journal's size, and whether
    the journal holds anything to fold in (changes, a torn line, or it follows another snapshot)."""
    path, journal = Path(path), journal_file(path)
    try:
        handle = open(journal, "rb")  # before the snapshot: a fold in between leaves this file as it was
    except FileNotFoundError:
        handle = None
    with handle if handle is not None else contextlib.nullcontext():
        snapshot = json.loads(path.read_text()) if path.exists() else {"generation": 0, "jobs": {}}
        if "generation" not in snapshot:  # a manifest written before the journal: the jobs alone
            snapshot = {"generation": 0, "jobs": snapshot}
        jobs, generation = snapshot["jobs"], snapshot["generation"]
        data = handle.read() if handle is not None else b""
    lines = data.split(b"\n")[:-1]  # what follows the last newline is a change never finished
    try:
        journal_generation = json.loads(lines[0])["generation"] if lines else None
    except (ValueError, KeyError, TypeError):
        journal_generation = None
    if journal_generation == generation:
        for line in lines[1:]:
            try:
                jobs.update(json.loads(line)["jobs"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by an older writer's crash: the change it held did not happen
    unfolded = journal_generation != generation or len(lines) > 1 or not data.endswith(b"\n")
    return {job_id: JobState(**state) for job_id, state in jobs.items()}, generation, len(data), unfolded


def _read(path: Path) -> tuple[dict[str, JobState], int, int, bool]:
    """``_replay``, with a snapshot that is not a manifest (cut short, empty, something else's) as one line."""
    try:
        return _replay(path)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise UserError(f"{path}: not a dpcluster manifest (corrupt, or written by something else: "
                        f"{type(error).__name__}); move it and {journal_file(path).name} away to start the folder's "
                        f"bookkeeping over (finished jobs find their outputs and are not redone)") from None


class Manifest:
    def __init__(self, path: Path, jobs: dict[str, JobState], read_only: bool = False, generation: int = 0,
                 journal_bytes: int = 0):
        # Read-only: changes stay in memory (a dry run, or status bringing states up to date for display).
        self.path, self.jobs, self.read_only = Path(path), jobs, read_only
        self.generation, self._journal_bytes = generation, journal_bytes
        self._snapshot_bytes = self.path.stat().st_size if self.path.exists() else 0
        self._new: set[str] = set()  # added since the last write: written with the next change
        self._handle: int | None = None
        # Everything this object wrote (journal lines and snapshots), for measuring what bookkeeping costs.
        self.bytes_written = 0

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> Manifest:
        jobs, generation, journal_bytes, unfolded = _read(Path(path))
        manifest = cls(path, jobs, read_only, generation, journal_bytes)
        if not read_only and unfolded and (jobs or journal_bytes):
            manifest.fold()  # also drops a change a killed writer left half-written
        return manifest

    def add(self, job_id: str, name: str, kind: str) -> None:
        if job_id not in self.jobs:
            self.jobs[job_id] = JobState(name, kind)
            self._new.add(job_id)

    def set(self, job_id: str, state: str, error: str | None = None) -> None:
        job = self.jobs[job_id]
        job.state, job.error = state, error
        if state == "running":
            job.attempts += 1
            job.scheduler_id, job.after = None, None
        self.record([job_id])

    def started(self, ids: dict[str, tuple[str | None, tuple[str, ...]]]) -> None:
        """Jobs whose attempt just began (job id -> (scheduler id or None, the ids it waits on)): running, an
        attempt each, with the scheduler's ids, as one change."""
        for job_id, (scheduler_id, after) in ids.items():
            job = self.jobs[job_id]
            job.state, job.error, job.attempts = "running", None, job.attempts + 1
            job.scheduler_id, job.after = scheduler_id, list(after)
        self.record(ids)

    def release(self, job_id: str, state: str = "pending", error: str | None = None) -> None:
        """``state`` without counting the attempt that began: the job never ran (a dependency failed first), or
        what ended it was not its own failure (an interruption, a cancellation, a node failure, a full disk)."""
        job = self.jobs[job_id]
        job.state, job.error, job.attempts = state, error, max(0, job.attempts - 1)
        self.record([job_id])

    def forgive(self, job_ids) -> None:
        """Give ``job_ids`` all their attempts again (``--retry-failed``)."""
        for job_id in job_ids:
            self.jobs[job_id].attempts = 0
        self.record(job_ids)

    def record(self, job_ids) -> None:
        """Append the current states of ``job_ids`` (and of jobs added since the last write) as one change."""
        if self.read_only:
            return
        changed = {job_id: asdict(self.jobs[job_id]) for job_id in (*self._new, *job_ids)}
        self._new.clear()
        if not changed:
            return
        if self._handle is None:
            if not journal_file(self.path).exists():
                self.fold()  # a new folder: the snapshot and journal of generation 0 first
            self._handle = os.open(journal_file(self.path), os.O_WRONLY | os.O_APPEND)
        self._append(self._handle, {"jobs": changed})
        if self._journal_bytes > max(FOLD_BYTES, FOLD_RATIO * self._snapshot_bytes):
            self.fold()

    def _append(self, handle: int, entry: dict) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        written = 0
        while written < len(line):  # one call writes it all on a local file; a short write goes on from there
            written += os.write(handle, line[written:])
        self._journal_bytes += len(line)
        self.bytes_written += len(line)

    def save(self) -> None:
        """Write the jobs added since the last change (those a new spec planned)."""
        self.record(())

    def fold(self) -> None:
        """Every state as the snapshot of the next generation, then an empty journal of that generation."""
        if self.read_only:
            return
        self.close()
        self._new.clear()
        generation = self.generation + 1
        text = json.dumps({"generation": generation,
                           "jobs": {job_id: asdict(state) for job_id, state in self.jobs.items()}},
                          separators=(",", ":"))
        write_atomic(self.path, lambda handle: handle.write(text.encode()))
        self.generation, self._snapshot_bytes, self._journal_bytes = generation, len(text), 0
        header = (json.dumps({"generation": generation}) + "\n").encode()
        write_atomic(journal_file(self.path), lambda handle: handle.write(header))
        self._journal_bytes = len(header)
        self.bytes_written += len(text) + len(header)

    def close(self) -> None:
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None

    def __del__(self):
        self.close()


class FolderBusy(UserError):
    """Another process holds the sweep folder's coordinator lock."""


def coordinator_active(sweep_dir: Path) -> bool:
    """Whether a coordinator holds the folder now (asked without waiting; a folder that cannot be locked, say
    read-only, counts as not held). Creates nothing: no lock file, no holder."""
    if not (Path(sweep_dir) / "coordinator.lock").exists():
        return False
    try:
        with coordinator_lock(sweep_dir, wait_seconds=0, record=False):
            return False
    except FolderBusy:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def coordinator_lock(sweep_dir: Path, wait_seconds: float = 10.0, record: bool = True) -> Iterator[None]:
    """Hold the sweep folder's coordinator lock: one process changes the manifest and submits at a time. Waits up
    to ``wait_seconds`` for another holder to finish (a Slurm feeder job holds it for seconds; a feeder itself
    waits longer, for the user's command), then raises :class:`FolderBusy` naming it. A process that dies lets go of it. ``flock``: held per open file, so two
    coordinators in one process exclude each other too; Linux maps it to POSIX locks on NFS, which hold across
    hosts (with lockd; Lustre and GPFS have their own)."""
    path = Path(sweep_dir) / "coordinator.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise FolderBusy(f"{sweep_dir} is being run by {holder}; wait for it to end, or stop it")
                time.sleep(0.2)
        if record:  # who holds it, for the next one to say
            handle.seek(0)
            handle.truncate()
            handle.write(f"dpcluster (pid {os.getpid()} on {socket.gethostname()})\n")
            handle.flush()
        yield
    finally:
        handle.close()
