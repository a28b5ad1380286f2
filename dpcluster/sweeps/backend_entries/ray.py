"""``ray``: every job a Ray task, on a local Ray or the cluster at ``--address``
(:class:`dpcluster.sweeps.ray_backend.RayBackend`)."""

from __future__ import annotations

from dpcluster.sweeps.backend_registry import BackendEntry, register_backend


def make(args, out, console, plain):
    from dpcluster.sweeps.ray_backend import RayBackend

    return RayBackend(args.address, args.gpus_per_job, args.cpus_per_job)


RAY = register_backend(BackendEntry(
    name="ray",
    summary="Ray tasks, on a local Ray or the cluster at --address",
    make="dpcluster.sweeps.backend_entries.ray:make",
    owns=("--address",),
))
