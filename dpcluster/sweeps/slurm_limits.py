"""What a Slurm site lets one user submit, read from the site itself, and how much room is left in the queue now.

``sbatch`` refuses an array index past ``MaxArraySize`` (1001 by default) and any job past a submit limit: the
controller's ``MaxJobCount`` (10,000 by default, for everyone), the user's association (``MaxSubmitJobs``,
``GrpSubmitJobs``, set with ``sacctmgr``) and the job's QOS (``MaxSubmitJobsPerUser``, ``GrpSubmitJobs``); every
task of an array counts as a job. A sweep of tens of thousands of jobs meets them in the middle of a submission
unless it reads them first: :func:`read_limits` does (``scontrol show config``, ``sacctmgr``), and counts what is
already queued against each (``squeue``, ``sdiag``). Association and QOS limits count only where the site enforces
them (``AccountingStorageEnforce`` with ``limits`` or ``safe``). The reading is a side effect at the edge; what is
done with it (:meth:`SiteLimits.room`, splitting arrays) is plain arithmetic.
"""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass, field

# Slurm's own defaults, used where scontrol cannot be asked.
DEFAULT_MAX_ARRAY_SIZE = 1001
DEFAULT_MAX_JOB_COUNT = 10000


@dataclass(frozen=True)
class SubmitLimit:
    """One cap on the jobs that may be queued (pending or running), with how many it counts now."""

    what: str  # where it comes from, as a user would look it up: "QOS normal MaxSubmitJobsPerUser"
    limit: int
    used: int

    @property
    def room(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class SiteLimits:
    # The most tasks one array may have (its indices run from 0 to max_array_size - 1).
    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    # Caps on queued jobs that apply to this user's submissions.
    submit: tuple[SubmitLimit, ...] = ()
    # Caps on running jobs (they never refuse a submission: jobs past them wait), shown for information.
    running: tuple[str, ...] = field(default=())

    def room(self) -> int | None:
        """How many more jobs (array tasks) may be submitted now; None where nothing caps it."""
        return min((limit.room for limit in self.submit), default=None)

    def tightest(self) -> SubmitLimit | None:
        return min(self.submit, key=lambda limit: limit.room, default=None)

    def describe(self) -> list[str]:
        """One line per limit read, for ``--dry-run`` and ``status``."""
        lines = [f"MaxArraySize {self.max_array_size} (tasks per array)"]
        lines += [f"{limit.what} {limit.limit} ({limit.used} queued now)" for limit in self.submit]
        lines += list(self.running)
        return lines


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _config() -> dict[str, str]:
    """``scontrol show config`` as KEY -> value."""
    out = {}
    for line in (_run(["scontrol", "show", "config"]) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _number(text: str | None) -> int | None:
    """A limit as sacctmgr or scontrol print it: a count, or nothing / "N" / "UNLIMITED" for no limit."""
    text = (text or "").strip().split()[0] if text and text.strip() else ""
    return int(text) if text.isdigit() else None


def _rows(command: list[str], names: list[str]) -> list[dict[str, str]]:
    """sacctmgr's parsable output (``-nP``) as dicts."""
    out = _run(command) or ""
    return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line.strip()]


def _queued_counts(columns: str, *options: str) -> list[tuple[str, ...]]:
    """One tuple per queued job (array tasks one by one) of squeue's ``columns`` (e.g. ``%a|%q``)."""
    out = _run(["squeue", "--noheader", "--array", f"--format={columns}", *options]) or ""
    return [tuple(line.strip().split("|")) for line in out.splitlines() if line.strip()]


def _jobs_in_controller() -> int:
    """Jobs the controller holds now (pending and running), from sdiag, else from squeue."""
    counts = {}
    for line in (_run(["sdiag"]) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Jobs pending", "Jobs running") and value.strip().isdigit():
            counts[key.strip()] = int(value.strip())
    if len(counts) == 2:
        return sum(counts.values())
    return len(_queued_counts("%i"))


def read_limits(account: str | None = None, qos: str | None = None, user: str | None = None) -> SiteLimits:
    """The limits that apply to ``user``'s jobs submitted with ``account`` and ``qos`` (the association's defaults
    where not given), with what each counts now. Where a command cannot be asked, what it would say is left out
    (Slurm's default MaxArraySize stands)."""
    user = user or getpass.getuser()
    config = _config()
    max_array = _number(config.get("MaxArraySize")) or DEFAULT_MAX_ARRAY_SIZE
    max_jobs = _number(config.get("MaxJobCount")) or DEFAULT_MAX_JOB_COUNT
    submit = [SubmitLimit("MaxJobCount (the whole controller)", max_jobs, _jobs_in_controller())]
    running: list[str] = []
    enforce = config.get("AccountingStorageEnforce", "")
    if "limits" not in enforce and "safe" not in enforce:
        return SiteLimits(max_array, tuple(submit))
    cluster = config.get("ClusterName", "")
    if account is None:
        rows = _rows(["sacctmgr", "-nP", "show", "user", user, "format=defaultaccount"], ["account"])
        account = rows[0]["account"] if rows and rows[0]["account"] else None
    fields = ["account", "partition", "maxsubmit", "grpsubmit", "maxjobs", "qos", "defaultqos"]
    where = [f"user={user}"] + ([f"cluster={cluster}"] if cluster else []) + ([f"account={account}"] if account else [])
    associations = _rows(["sacctmgr", "-nP", "show", "assoc", "where", *where, f"format={','.join(fields)}"], fields)
    mine = _queued_counts("%a|%q", "--user", user)
    if account:
        in_account = sum(1 for job_account, _ in mine if job_account == account)
    else:
        in_account = len(mine)
    for row in associations:
        name = f"association {row['account']}/{user}" + (f" partition {row['partition']}" if row["partition"] else "")
        for key, label in (("maxsubmit", "MaxSubmitJobs"), ("grpsubmit", "GrpSubmitJobs")):
            if (value := _number(row[key])) is not None:
                submit.append(SubmitLimit(f"{name} {label}", value, in_account))
        if (value := _number(row["maxjobs"])) is not None:
            running.append(f"{name} MaxJobs {value} (jobs past it wait; never refused)")
    if account:  # the account's own group limit counts every user's jobs in it
        parent = _rows(["sacctmgr", "-nP", "show", "assoc", "where", f"account={account}", "user=",
                        *([f"cluster={cluster}"] if cluster else []), "format=user,grpsubmit"], ["user", "grpsubmit"])
        for row in parent:
            if not row["user"] and (value := _number(row["grpsubmit"])) is not None:
                used = len(_queued_counts("%i", "--account", account))
                submit.append(SubmitLimit(f"account {account} GrpSubmitJobs", value, used))
    if qos is None:
        defaults = [row["defaultqos"] for row in associations if row["defaultqos"]]
        qos = defaults[0] if defaults else "normal"
    names = ["name", "maxsubmitpu", "grpsubmit", "maxjobspu"]
    for row in _rows(["sacctmgr", "-nP", "show", "qos", "where", f"name={qos}", f"format={','.join(names)}"], names):
        if (value := _number(row["maxsubmitpu"])) is not None:
            used = sum(1 for _, job_qos in mine if job_qos == qos)
            submit.append(SubmitLimit(f"QOS {qos} MaxSubmitJobsPerUser", value, used))
        if (value := _number(row["grpsubmit"])) is not None:
            submit.append(SubmitLimit(f"QOS {qos} GrpSubmitJobs", value, len(_queued_counts("%i", "--qos", qos))))
        if (value := _number(row["maxjobspu"])) is not None:
            running.append(f"QOS {qos} MaxJobsPerUser {value} (jobs past it wait; never refused)")
    return SiteLimits(max_array, tuple(submit), tuple(running))


def split_array(tasks: list, max_array_size: int) -> list[list]:
    """``tasks`` as consecutive arrays of at most ``max_array_size`` tasks each."""
    size = max(1, max_array_size)
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]
