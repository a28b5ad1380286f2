"""The feeder: a small Slurm job that submits the part of a sweep that did not fit in the queue, so a sweep larger
than a site lets one user queue at once still runs with no process of the user's alive.

When a submission leaves jobs out for want of room (see ``slurm_limits``), the coordinator queues one feeder job
that begins ``interval`` seconds later. The feeder runs the coordinator once, inside Slurm: it takes in what ended
since (outcome files, ``sacct``), submits what fits now, and queues the next feeder if anything is still left
out — each interval doubled while no room frees up (up to ``MAX_INTERVAL``), back to the first once it submitted
something. It holds one slot of the user's queue, kept free for it by every submission, and is the one job of
the chain queued at a time (``SWEEP/feeder.json`` names it). Running the sweep's command again, ``--wait``,
``status`` and ``cancel`` all see the same manifest: a re-run keeps the queued feeder, ``cancel`` cancels it, and
a feeder that finds the sweep cancelled or another coordinator at work does nothing but keep the chain alive.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dpcluster.atomic import write_atomic

MAX_INTERVAL = 600.0


@dataclass(frozen=True)
class FeederRecord:
    scheduler_id: str
    # Seconds after its submission it begins; the first interval of the chain, to go back to.
    interval: float
    first_interval: float
    submitted_at: float
    # Jobs left out of the queue when it was submitted.
    waiting: int = 0


def read_record(path: Path) -> FeederRecord | None:
    try:
        return FeederRecord(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(path: Path, record: FeederRecord) -> None:
    text = json.dumps(asdict(record))
    write_atomic(Path(path), lambda handle: handle.write(text.encode()))


def next_interval(record: FeederRecord | None, default: float, submitted_any: bool) -> tuple[float, float]:
    """(interval, first interval) of the next feeder: the first again after a feeder that submitted something,
    twice the last (up to MAX_INTERVAL) after one that found no room."""
    first = record.first_interval if record is not None else default
    if record is None or submitted_any:
        return first, first
    return min(MAX_INTERVAL, 2 * record.interval), first


def feeder_line(layout, in_queue: dict, pending: int) -> str | None:
    """What ``dpcluster status`` says of the feeder chain: the feeder queued and when it begins, or that the
    chain has ended with jobs still left out (None when there is no chain to speak of)."""
    record = read_record(layout.feeder_file)
    if record is None:
        return None
    known = in_queue.get(record.scheduler_id)
    if known is not None:
        begins = record.submitted_at + record.interval - time.time()
        when = f", begins in {begins:.0f} s" if known.state == "PENDING" and begins > 0 else ""
        return (f"feeder job {record.scheduler_id} ({known.state}{when}) submits the {record.waiting} job(s) that "
                f"waited for room in Slurm's queue, as jobs end")
    if pending:
        return (f"{pending} job(s) not submitted and no feeder job queued (the last was {record.scheduler_id}): run "
                f"the sweep's command again")
    return None


def own_job_id() -> str | None:
    """This process's Slurm job id when it runs inside one (as squeue names it, array tasks as ID_TASK)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def feed(sweep_dir: str, backend, device: str) -> str:
    """The feeder job's body: one pass of the coordinator over the sweep (see the module's docstring). Says what
    it did in its log, and returns it."""
    said = _feed(sweep_dir, backend, device)
    print(f"feeder: {said}", flush=True)
    return said


def _feed(sweep_dir: str, backend, device: str) -> str:
    from dpcluster.sweeps.coordinator import run_locked
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.manifest import FolderBusy, coordinator_lock
    from dpcluster.sweeps.spec import SweepSpec

    layout = SweepLayout(Path(sweep_dir))
    deadline = time.monotonic() + max(60.0, 60 * backend.feeder_minutes - 120)
    while True:
        try:
            with coordinator_lock(layout.root, wait_seconds=60):
                record = read_record(layout.feeder_file)
                if record is None or record.scheduler_id != own_job_id():
                    return f"not the sweep's current feeder ({record.scheduler_id if record else 'none'} is)"
                if layout.cancel_file.exists():
                    return "the sweep was cancelled: nothing submitted"
                backend.feeding = record
                run_locked(SweepSpec.load(layout.spec_file), layout.root, backend, device,
                           say=lambda text: print(text, flush=True), follow=False, undo_cancel=False)
        except FolderBusy:
            # Another coordinator (a --wait, or the user's command) is at work: keep the chain alive behind it.
            backend.feeding = read_record(layout.feeder_file)
            backend.queue_feeder(layout.root, device, waiting=backend.feeding.waiting if backend.feeding else 0)
            return f"another coordinator holds the sweep; the next feeder is {backend.feeder}"
        if backend.feeder is not None:
            return f"the next feeder is {backend.feeder}" if backend.feeder else "everything is submitted: the " \
                "chain ends here"
        # Not even a slot for the next feeder (other jobs of the user took the room): wait for one here rather
        # than let the chain end.
        if time.monotonic() > deadline:
            return "no room in the queue for the rest of the sweep or the next feeder: run the sweep's command again"
        print("no room in the queue yet; waiting", flush=True)
        time.sleep(min(backend.feed_seconds, 60))
