"""Results at scale: reading and aggregating synthetic validated levels (real ``LEVEL_SCHEMA``, eight layers per
row) in the old layout (one small file per job) and compacted (one file per partition), and ``dpcluster report``
on the synthetic data of a 4,556-job sweep (the AlexNet / CIFAR-10 sweep with both rewind points and every
analysis). Writes JSON (default bench/results/scale_results.json).

    python bench/scale_results.py                               # 10k, 100k and 1M rows, and the report
    python bench/scale_results.py --rows 10000 --no-report      # a quick figure

The old layout is timed with the reader the project had before compaction (``legacy_read_levels``, kept here
verbatim) and with today's reader, whose first read of a folder of small files compacts it. A million small files
are not made (a million inodes, and about 20 minutes at the old reader's 1.2 ms a file on this machine): the old
layout is measured at 10k and 100k rows and grows linearly in files.

``measure_results()`` is the entry point for ``bench/scale.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

# As the dpcluster command has it (dpcluster/cli/main.py), before pyarrow loads.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # standalone: the checkout's dpcluster, not an installed copy
    sys.path.insert(0, str(REPO))

from dpcluster.results import store  # noqa: E402
from dpcluster.results.levels import LEVEL_SCHEMA, PARTITIONING_SCHEMA, read_levels  # noqa: E402
from dpcluster.results.paths import partition_dir  # noqa: E402
from dpcluster.sweeps.aggregate import aggregate, summarise  # noqa: E402

DATASETS = ("cifar10", "cifar100", "imagenet10", "digits")
MODELS = ("alexnet", "convnet", "resnet18")
# (method, images per class, rewind point, levels per seed): one (data set, model, seed) block of rows.
SERIES = (("dense", 0, None, 1), ("imp", 0, "0ep", 30), ("imp", 0, "1ep", 30), ("distilled", 50, None, 30),
          ("distilled", 10, None, 30), ("random", 0, None, 30), ("hybrid", 10, "0ep", 30))
LAYERS = tuple(f"features.{i}.weight" for i in range(7)) + ("classifier.weight",)
TOTALS = np.array([9_600, 614_400, 442_368, 442_368, 331_776, 331_776, 331_776, 30_720])


# --- synthetic data -------------------------------------------------------------------------------------------

def _series_of_rows() -> list[tuple[str, int, str | None, int]]:
    """(method, ipc, rewind, round) for each row of one (data set, model, seed) block."""
    return [(method, ipc, rewind, r if levels > 1 else 0)
            for method, ipc, rewind, levels in SERIES for r in range(1, levels + 1)]


def synthetic_levels(n: int, seed: int = 0) -> pa.Table:
    """``n`` validated levels in ``LEVEL_SCHEMA`` with the partition columns and each row's ``job_id``, spread like
    sweeps spread them: per data set, model and seed, one dense level and 30 rounds of six pruned series."""
    rng = np.random.default_rng(seed)
    block = _series_of_rows()
    i = np.arange(n)
    within, group = i % len(block), i // len(block)
    pair, seeds = group % (len(DATASETS) * len(MODELS)), group // (len(DATASETS) * len(MODELS))
    method = np.array([b[0] for b in block], dtype=object)[within]
    ipc = np.array([b[1] for b in block])[within]
    rewind = np.array([b[2] for b in block], dtype=object)[within]
    rounds = np.array([b[3] for b in block])[within]
    dataset = np.array(DATASETS, dtype=object)[pair // len(MODELS)]
    model = np.array(MODELS, dtype=object)[pair % len(MODELS)]
    fraction = 0.8 ** rounds
    kept_layers = np.floor(TOTALS[None, :] * fraction[:, None]).astype(np.int64)
    kept, total = kept_layers.sum(axis=1), np.full(n, TOTALS.sum())
    accuracy = np.clip(0.85 - 0.3 * (1 - fraction) ** 8 + rng.normal(0, 0.01, n), 0, 1)
    inner = np.where(method == "dense", 0.0, rng.uniform(5, 50, n))
    validation = rng.uniform(100, 200, n)
    search = inner * np.maximum(rounds, 1)
    examples = (np.maximum(rounds, 1) * 50_000).astype(np.int64)
    layers = pa.ListArray.from_arrays(
        pa.array(np.arange(0, (n + 1) * len(LAYERS), len(LAYERS), dtype=np.int32)),
        pa.StructArray.from_arrays(
            [pa.array(np.tile(np.array(LAYERS, dtype=object), n), pa.string()), pa.array(kept_layers.ravel()),
             pa.array(np.tile(TOTALS, n))], fields=list(LEVEL_SCHEMA.field("layers").type.value_type)))
    experiment = [f"{m}-{k}-{w}-s{s}-{d}-{o}" for m, k, w, s, d, o in zip(method, ipc, rewind, seeds, dataset, model)]
    columns = {
        "experiment_id": experiment, "seed": seeds, "round": rounds, "sparsity": 1 - kept / total,
        "weights_kept": kept, "weights_total": total, "test_accuracy": accuracy, "test_loss": 1 - accuracy,
        "inner_data": np.where(method == "dense", "none", np.where(method == "distilled", "distilled", "real")),
        "inner_seconds": inner, "inner_examples": examples, "validation_seconds": validation,
        "validation_examples": np.full(n, 2_500_000), "mask_search_seconds": search,
        "mask_search_examples": examples, "time_to_mask_seconds": search + validation,
        "time_to_mask_examples": examples + 2_500_000, "mask_hash": [f"{x:016x}" for x in rng.integers(0, 2**62, n)],
        "layers": layers, "rewind": rewind, "images_per_class": ipc,
    }
    arrays = [pa.array(columns[f.name], f.type) for f in LEVEL_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=LEVEL_SCHEMA)
    for name, values in (("dataset", dataset), ("model", model), ("method", method)):
        table = table.append_column(name, pa.array(values, pa.string()))
    return table.append_column("job_id", pa.array([f"validate-{x:012x}" for x in i], pa.string()))


def _partitions(table: pa.Table) -> Iterable[tuple[tuple[str, str, str], pa.Table]]:
    """(dataset, model, method) and the rows of that partition, in ``LEVEL_SCHEMA`` plus ``job_id``."""
    keys = table.select(["dataset", "model", "method"]).group_by(["dataset", "model", "method"]).aggregate([])
    for key in keys.to_pylist():
        mask = None
        for name, value in key.items():
            match = pc.equal(table[name], value)
            mask = match if mask is None else pc.and_(mask, match)
        yield (key["dataset"], key["model"], key["method"]), table.filter(mask).drop_columns(list(key))


def write_small_files(results_dir: Path, table: pa.Table) -> int:
    """The old layout: one file per job (what ``write_level`` writes), named by its job id. Returns the files."""
    count = 0
    for (dataset, model, method), rows in _partitions(table):
        folder = partition_dir(results_dir, dataset, model, method)
        folder.mkdir(parents=True, exist_ok=True)
        ids, rows = rows["job_id"].to_pylist(), rows.drop_columns(["job_id"])
        for index, job_id in enumerate(ids):
            pq.write_table(rows.slice(index, 1), folder / f"{job_id}.parquet")
        count += len(ids)
    return count


def write_compacted(results_dir: Path, table: pa.Table) -> int:
    """The compacted layout, written directly (a million small files are not made to compact them): one
    compacted file per partition. Returns the files."""
    count = 0
    for (dataset, model, method), rows in _partitions(table):
        store.write_compacted_file(partition_dir(results_dir, dataset, model, method), rows, ())
        count += 1
    return count


def legacy_read_levels(results_dir: Path, names: Iterable[str] | None = None) -> pa.Table:
    """The project's reader before compaction, verbatim: every file found by ``rglob``, filtered by stem in
    Python, read through ``pyarrow.dataset``."""
    import pyarrow.dataset as ds

    folder = Path(results_dir)
    files = sorted(folder.rglob("*.parquet")) if folder.exists() else []
    if names is not None:
        wanted = set(names)
        files = [f for f in files if f.stem in wanted]
    schema = pa.unify_schemas([LEVEL_SCHEMA, PARTITIONING_SCHEMA])
    if not files:
        return schema.empty_table()
    partitioning = ds.partitioning(PARTITIONING_SCHEMA, flavor="hive")
    return ds.dataset([str(f) for f in files], format="parquet", partitioning=partitioning, schema=schema,
                      partition_base_dir=str(folder)).to_table()


# --- timing ---------------------------------------------------------------------------------------------------

def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return round(time.perf_counter() - start, 3), value


def _files(folder: Path) -> int:
    return sum(1 for _ in Path(folder).rglob("*.parquet"))


@contextmanager
def _scratch(workdir: Path | None):
    folder = Path(tempfile.mkdtemp(prefix="scale-results-", dir=workdir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_and_aggregate(sweep: Path, names: list[str], legacy: bool = False) -> dict:
    """Seconds to read every level (all columns, the ``names`` filter on) and to aggregate them."""
    if legacy:
        read, table = _timed(lambda: legacy_read_levels(sweep / "results", names))
        summed, _ = _timed(lambda: summarise(legacy_read_levels(sweep / "results", names)))
    else:
        read, table = _timed(lambda: read_levels(sweep / "results", names))
        summed, _ = _timed(lambda: aggregate(sweep, names))
    return {"read_seconds": read, "aggregate_seconds": summed, "rows": table.num_rows}


def measure_small_files(n: int, workdir: Path | None = None, legacy: bool = True) -> dict:
    """The old layout of ``n`` rows: the old reader (``legacy``), then today's reader, whose first read
    compacts, and a second read of the compacted folder."""
    table = synthetic_levels(n)
    names = table["job_id"].to_pylist()
    with _scratch(workdir) as sweep:
        made, files = _timed(lambda: write_small_files(sweep / "results", table))
        out = {"rows": n, "files": files, "write_seconds": made}
        if legacy:
            out["legacy"] = _read_and_aggregate(sweep, names, legacy=True)
        first, read = _timed(lambda: read_levels(sweep / "results", names))
        out["first_read_seconds"], out["files_after_first_read"] = first, _files(sweep / "results")
        assert read.num_rows == n, (read.num_rows, n)
        out["compacted"] = _read_and_aggregate(sweep, names)
    return out


def measure_compacted(n: int, workdir: Path | None = None) -> dict:
    """``n`` rows already compacted: reading them all, reading the aggregate's columns, aggregating."""
    table = synthetic_levels(n)
    names = table["job_id"].to_pylist()
    with _scratch(workdir) as sweep:
        made, files = _timed(lambda: write_compacted(sweep / "results", table))
        out = {"rows": n, "files": files, "write_seconds": made, **_read_and_aggregate(sweep, names)}
        out["read_without_names_seconds"], _ = _timed(lambda: read_levels(sweep / "results"))
        columns = ["test_accuracy", "sparsity"]
        out["read_two_columns_seconds"], _ = _timed(lambda: read_levels(sweep / "results", names, columns=columns))
    return out


# --- the report on a 4,556-job sweep --------------------------------------------------------------------------

def report_sweep_spec():
    """The AlexNet / CIFAR-10 sweep (dense, IMP rewound to 0 and 1 epochs, distilled with 50 and 10 images per
    class, random; seeds 0-4; 30 rounds) with every analysis: 4,556 jobs, 755 validated levels."""
    from dpcluster.sweeps.spec import SweepSpec

    data = tomllib.loads((REPO / "jobs" / "alexnet_cifar10.toml").read_text())
    data["base"]["pruning"].pop("rewind")
    data["rewinds"] = ["0ep", "1ep"]
    data["analyses"] = ["stability", "landscape", "sharpness", "kept_weights"]
    data.pop("analysis", None)  # at every level (the shipped spec measures stability at five)
    return SweepSpec.from_dict(data)


def write_report_sweep(folder: Path) -> dict:
    """Synthetic rows for every validation and analysis job of :func:`report_sweep_spec`, each written where and
    how the job writes it (``write_level``, ``write_analysis``). Returns the files per kind."""
    from dpcluster.results.analyses import write_analysis
    from dpcluster.results.levels import write_level
    from dpcluster.results.records import LayerCount, RoundRecord
    from dpcluster.sweeps.graph import expand
    from dpcluster.sweeps.layout import SweepLayout

    sweep = report_sweep_spec()
    sweep.save(folder / "sweep.toml")
    layout, rng, counts = SweepLayout(folder), np.random.default_rng(0), {}
    grid = np.linspace(-1, 1, 11)
    for job in expand(sweep):
        spec, r = job.experiment, job.round
        if spec is None or job.kind in ("mask", "distill", "pair"):
            continue
        counts[job.kind] = counts.get(job.kind, 0) + 1
        fraction = 0.8 ** r
        kept_layers = np.floor(TOTALS * fraction).astype(int)
        sparsity = 1 - kept_layers.sum() / TOTALS.sum()
        level = {"experiment_id": spec.experiment_id, "seed": spec.seed, "round": r, "sparsity": sparsity,
                 "images_per_class": spec.set_size, "rewind": spec.rewind_point_used}
        accuracy = float(np.clip(0.85 - 0.3 * (1 - fraction) ** 8 + rng.normal(0, 0.01), 0, 1))
        if job.kind == "validate":
            search, validation = 20.0 * max(r, 1), float(rng.uniform(100, 200))
            record = RoundRecord(
                experiment_id=spec.experiment_id, method=spec.method, seed=spec.seed, dataset=spec.data.name,
                model=spec.model.name, round=r, sparsity=sparsity, weights_kept=int(kept_layers.sum()),
                weights_total=int(TOTALS.sum()), test_accuracy=accuracy, test_loss=1 - accuracy, inner_data="real",
                inner_seconds=20.0, inner_examples=50_000, validation_seconds=validation,
                validation_examples=3_000_000, mask_search_seconds=search, mask_search_examples=50_000 * max(r, 1),
                time_to_mask_seconds=search + validation, time_to_mask_examples=50_000 * max(r, 1) + 3_000_000,
                mask_hash=f"{r:016x}", rewind=spec.rewind_point_used,
                layers=tuple(LayerCount(n, int(k), int(t)) for n, k, t in zip(LAYERS, kept_layers, TOTALS)))
            write_level(record, spec.set_size, layout.result_file(spec, job.id))
            continue
        if job.kind == "stability":
            barrier = float(rng.uniform(0, 0.1))
            rows = [{"alpha": a, "test_loss": 1.0 + barrier * np.sin(np.pi * a),
                     "test_error": 1 - accuracy + barrier * np.sin(np.pi * a), "instability": barrier}
                    for a in np.linspace(0, 1, 11)]
        elif job.kind == "landscape":
            rows = [{"a": a, "b": b, "test_loss": 1 + a * a + b * b, "test_accuracy": accuracy - 0.1 * (a * a + b * b)}
                    for a in grid for b in grid]
        elif job.kind == "sharpness":
            rows = [{"top_eigenvalue": float(rng.uniform(10, 100)), "eigen_iterations": 30, "eigen_converged": True,
                     "trace": float(rng.uniform(100, 1000)), "trace_std_error": 5.0, "trace_samples": 20,
                     "examples": 512}]
        else:
            edges = np.linspace(-0.1, 0.1, 41)
            rows = [{"layer": name, "low": float(lo), "high": float(hi), "kept": int(k * fraction), "pruned":
                     int(k * (1 - fraction))} for name, total in zip(LAYERS, TOTALS)
                    for lo, hi, k in zip(edges[:-1], edges[1:], np.full(40, total // 40))]
        write_analysis(job.kind, level, rows, layout.analysis_file(job.kind, spec, job.id))
    return counts


def time_report(folder: Path, out: Path) -> dict:
    """``write_report`` end to end, split into reading (``load``), each figure (drawing and saving PNG and SVG)
    and the rest (summary, CSV, page)."""
    from dpcluster.report import build
    from dpcluster.sweeps.coordinator import current_job_ids

    figures, load = dict(build.FIGURES), build.load
    spent: dict[str, float] = {}

    def timing(name, make):
        def timed_make(data):
            started = time.perf_counter()
            figure = make(data)
            if figure is not None:
                save = figure.savefig

                def timed_save(*args, **kwargs):
                    begun = time.perf_counter()
                    save(*args, **kwargs)
                    spent[f"{name}_save"] = spent.get(f"{name}_save", 0.0) + time.perf_counter() - begun
                figure.savefig = timed_save
            spent[f"{name}_draw"] = time.perf_counter() - started
            return figure
        return timed_make

    def timed_load(path):
        started = time.perf_counter()
        data = load(path)
        spent["load"] = time.perf_counter() - started
        return data

    build.FIGURES.update({name: timing(name, make) for name, make in figures.items()})
    build.load = timed_load
    try:
        total, _ = _timed(lambda: build.write_report(folder, out))
    finally:
        build.FIGURES.update(figures)
        build.load = load
    spec_seconds, _ = _timed(lambda: current_job_ids(folder))
    return {"report_seconds": total, "current_job_ids_seconds": spec_seconds,
            "parts_seconds": {k: round(v, 3) for k, v in spent.items()}}


def measure_report(workdir: Path | None = None) -> dict:
    """The report on the 4,556-job sweep's synthetic data: first on the small files (the first read compacts
    the partitions of more than ``store.COMPACT_AT`` files), then again on the compacted folder."""
    with _scratch(workdir) as folder:
        made, counts = _timed(lambda: write_report_sweep(folder))
        out = {"jobs": 4556, "files": _files(folder), "files_per_kind": counts, "write_seconds": made}
        out["first"] = time_report(folder, folder / "report")
        out["files_after_first"] = _files(folder / "results") + _files(folder / "analyses")
        out["second"] = time_report(folder, folder / "report")
    return out


def measure_results(rows: Iterable[int] = (10_000, 100_000, 1_000_000),
                    small_file_rows: Iterable[int] = (10_000, 100_000), report: bool = True,
                    workdir: Path | None = None, legacy: bool = True) -> dict:
    """Every figure of this benchmark as a dict: ``small_files`` (the old layout, per size), ``compacted`` (per
    size) and ``report`` (the 4,556-job sweep), with the machine."""
    figures: dict = {"cpus": os.cpu_count(), "machine": platform.machine(),
                     "processor": platform.processor() or "cpu", "pyarrow": pa.__version__}
    figures["small_files"] = [measure_small_files(n, workdir, legacy) for n in small_file_rows]
    figures["compacted"] = [measure_compacted(n, workdir) for n in rows]
    if report:
        figures["report"] = measure_report(workdir)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="compacted sizes")
    parser.add_argument("--small-file-rows", default="10000,100000", help="sizes of the old layout (one file a job)")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--no-legacy", action="store_true", help="skip the old reader")
    parser.add_argument("--workdir", type=Path, help="where the synthetic folders go (default: the temp dir)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale_results.json")
    args = parser.parse_args()
    sizes = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    figures = measure_results(sizes(args.rows), sizes(args.small_file_rows), not args.no_report, args.workdir,
                              not args.no_legacy)
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
