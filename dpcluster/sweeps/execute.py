"""Running one job of a sweep, wherever it runs (this process, a Slurm job, a Ray task): a plain function of
picklable arguments that reads its inputs from and writes its outputs to the sweep folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from dpcluster.atomic import write_atomic
from dpcluster.methods.engine import Inputs, run_experiment, validate_round
from dpcluster.results.records import SCHEMA, RoundRecord
from dpcluster.specs import ExperimentSpec
from dpcluster.sweeps.graph import Job
from dpcluster.training.distributed import from_environment

DISTILLED = "distilled"
MASKS = "masks"
RESULTS = "results"


@dataclass(frozen=True)
class JobCall:
    job: Job
    sweep_dir: Path
    device: str = "auto"


def mask_dir(sweep_dir: Path, spec: ExperimentSpec) -> Path:
    return sweep_dir / MASKS / spec.name


def result_path(sweep_dir: Path, job: Job) -> Path:
    """One Parquet file per validation job, in a hive-partitioned data set."""
    spec = job.experiment
    return (sweep_dir / RESULTS / f"dataset={spec.data.name}" / f"model={spec.model.name}" / f"method={spec.method}"
            / f"{job.id}.parquet")


def _inputs(spec: ExperimentSpec, sweep_dir: Path, device: torch.device) -> Inputs:
    from dpcluster.data import load_data
    from dpcluster.distilled import obtain_distilled_set
    from dpcluster.runtime import place_data

    data = load_data(spec.data)
    if not spec.uses_distilled_set:
        return Inputs(place_data(data, device, spec.data.placement))
    inputs = Inputs.with_set(data, obtain_distilled_set(spec.distilled, data, spec.model, sweep_dir / DISTILLED,
                                                        device))
    return dataclasses.replace(inputs, data=place_data(data, device, spec.data.placement),
                               distilled=inputs.distilled.to(device))


def execute(call: JobCall) -> str:
    """Run the job; returns its id. Idempotent: a finished job's outputs are reused, not recomputed."""
    from dpcluster.runtime import resolve_device, use_granted_cpus

    job, sweep_dir = call.job, Path(call.sweep_dir)
    use_granted_cpus()
    threads = torch.get_num_threads()  # what torch really runs on, for the log
    print(f"{job.name}: {threads} CPU thread{'s' if threads > 1 else ''}", flush=True)
    device = resolve_device(call.device)
    distributed = from_environment(device)
    if distributed is not None:
        device = distributed.device_for(device)
        print(f"{job.name}: process {distributed.rank} of {distributed.world_size} on {device}", flush=True)
    if distributed is not None and job.kind != "validate":
        # Only validations train data-parallel; of a job started on several processes, rank 0 does the work.
        if not distributed.is_main:
            return job.id
        distributed = None
    if job.kind == "aggregate":
        from dpcluster.sweeps.aggregate import aggregate

        aggregate(sweep_dir)
        return job.id
    spec = job.experiment
    if job.kind == "distill":
        _inputs(spec, sweep_dir, device)  # distils into the shared cache, or finds it there
    elif job.kind == "mask":
        # Masks need no validation here: every level is validated by a job of its own.
        search = spec.replace(pruning=spec.pruning.replace(validate=False))
        run_experiment(search, _inputs(spec, sweep_dir, device), mask_dir(sweep_dir, spec), device,
                       keep_masks=True)
    else:
        path = result_path(sweep_dir, job)
        if not path.exists():
            runs = mask_dir(sweep_dir, spec) if job.round else None
            record = validate_round(spec, _inputs(spec, sweep_dir, device), runs, job.round, device,
                                    distributed=distributed)
            if distributed is None or distributed.is_main:  # every rank holds the same model; one writes
                write_result(record, spec, path)
    return job.id


# The hive partition columns: the folders dataset=.../model=.../method=... of the results.
PARTITIONS = ("dataset", "model", "method")


def _result_schemas():
    import pyarrow as pa

    partitions = [f for f in SCHEMA if f.name in PARTITIONS]
    files = [f for f in SCHEMA if f.name not in PARTITIONS]
    return (pa.schema(files + [pa.field("images_per_class", pa.int64(), nullable=False)]),
            pa.schema([f.with_nullable(True) for f in partitions]))


# One validation job's file (the round record and the set size), and the hive partition columns of the folders
# (dataset=.../model=.../method=...), with their types stated rather than guessed from the folder names.
RESULT_SCHEMA, PARTITIONING_SCHEMA = _result_schemas()


def write_result(record: RoundRecord, spec: ExperimentSpec, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = record.as_row()
    row["experiment_id"] = spec.experiment_id
    row["images_per_class"] = spec.distilled.images_per_class if spec.uses_distilled_set else 0
    # The partition columns live in the folder names, not in the file (RESULT_SCHEMA leaves them out).
    table = pa.Table.from_pylist([row], schema=RESULT_SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def execute_logged(call: JobCall) -> str:
    """``execute`` with the job's output and any traceback in ``SWEEP/logs/<job>.log`` (local and Ray jobs;
    Slurm jobs get submitit's own log files)."""
    import contextlib
    import traceback

    log = Path(call.sweep_dir) / "logs" / f"{call.job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        try:
            return execute(call)
        except BaseException:
            traceback.print_exc(file=handle)
            raise
