"""Backends by name (``dpcluster sweep --backend``): one module in ``dpcluster/sweeps/backend_entries/`` that
registers a :class:`BackendEntry`. Its maker is named by a ``package.module:function`` path and imported only
when the backend is made, so building the CLI loads no scheduler client (submitit, ray)."""

from __future__ import annotations

from dataclasses import dataclass

from dpcluster.registry import Registry


@dataclass(frozen=True)
class BackendEntry:
    name: str
    # One line for help texts and the README.
    summary: str
    # ``package.module:function`` making it for ``dpcluster sweep``: (args, out, console, plain) -> Backend, where
    # ``args`` are the command's options, ``out`` the sweep folder, ``console`` the command's rich console and
    # ``plain(line)`` writes a line unwrapped (a dry run's); a bad option is a UserError naming it.
    make: str
    # The options of ``dpcluster sweep`` only this backend reads: given with another backend (set to anything but
    # their default), they are refused in one line, "--stage, --wait: only for --backend slurm".
    owns: tuple[str, ...] = ()
    # Its jobs run in this process: the device, the data and the distilled sets are checked here before anything
    # runs (elsewhere they are the job's machine's, checked there), and it names each job as it starts.
    runs_here: bool = False
    # Its jobs outlive the command (a scheduler holds them): the command ends once they are submitted, unless
    # ``--wait``; such a backend says what it held back (``held_jobs``, ``site_limits``, ``feeder``, as Slurm's).
    detaches: bool = False
    # Its ``--dry-run`` is its own (Slurm shows each sbatch script); for the others a dry run lists the jobs.
    shows_dry_run: bool = False


def _load_all() -> None:
    # The backend modules register themselves on import, in the order help texts list them (local, the default,
    # first).
    from dpcluster.sweeps.backend_entries import local, slurm, ray  # noqa: F401, I001


BACKENDS: Registry[BackendEntry] = Registry("backend", _load_all)
register_backend = BACKENDS.register
get_backend = BACKENDS.get
backend_names = BACKENDS.names
