"""``slurm``: every job a Slurm job (or array task) submitted through submitit, with dependencies Slurm resolves
(:class:`dpcluster.sweeps.slurm_backend.SlurmBackend`)."""

from __future__ import annotations

from dpcluster.errors import UserError
from dpcluster.sweeps.backend_registry import BackendEntry, register_backend


def make(args, out, console, plain):
    import time

    from dpcluster.sweeps.jobs import kind_names
    from dpcluster.sweeps.layout import SweepLayout
    from dpcluster.sweeps.slurm_backend import SlurmBackend, parse_sbatch, parse_stage

    if args.gpus_per_job != int(args.gpus_per_job) or args.cpus_per_job != int(args.cpus_per_job):
        raise UserError("--gpus-per-job and --cpus-per-job must be whole numbers on Slurm")
    if args.requeues < 0:
        raise UserError(f"--requeues must be >= 0, got {args.requeues}")
    if args.feed_seconds <= 0:
        raise UserError(f"--feed-seconds must be > 0, got {args.feed_seconds:g}")
    layout = SweepLayout(out)
    stages = dict(parse_stage(text, kind_names()) for text in args.stage)
    return SlurmBackend(layout.logs_dir, args.partition, args.account, args.qos, args.constraint,
                        int(args.gpus_per_job), int(args.cpus_per_job), args.mem_gb, args.time_min,
                        args.array_parallelism, args.tasks_per_job, stages=stages, setup=tuple(args.setup),
                        sbatch=dict(parse_sbatch(text) for text in args.sbatch), requeues=args.requeues,
                        snapshot=layout.snapshot_dir(time.strftime("%Y%m%d-%H%M%S")) if args.snapshot else None,
                        dry_run=plain if args.dry_run else None, feed_seconds=args.feed_seconds,
                        pack=args.pack, code=tuple(args.code))


SLURM = register_backend(BackendEntry(
    name="slurm",
    summary="Slurm jobs through submitit",
    make="dpcluster.sweeps.backend_entries.slurm:make",
    owns=("--stage", "--setup", "--sbatch", "--snapshot", "--code", "--wait", "--requeues", "--feed-seconds",
          "--pack"),
    detaches=True,
    shows_dry_run=True,
))
