"""``local``: every job in this process, one after another (:class:`dpcluster.sweeps.backends.LocalBackend`)."""

from __future__ import annotations

from dpcluster.sweeps.backend_registry import BackendEntry, register_backend


def make(args, out, console, plain):
    from dpcluster.sweeps.backends import LocalBackend

    return LocalBackend(on_start=lambda job: console.print(f"  {job.name}"))


LOCAL = register_backend(BackendEntry(
    name="local",
    summary="this process, one job after another",
    make="dpcluster.sweeps.backend_entries.local:make",
    runs_here=True,
))
