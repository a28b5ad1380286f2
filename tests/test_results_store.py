"""Compaction of the results and analyses data sets (dpcluster/results/store.py): every row once, whatever runs
at the same time or dies half-way, and the readers' answers unchanged by it."""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpcluster.results import store
from dpcluster.results.analyses import SCHEMAS, read_analysis, write_analysis
from dpcluster.results.levels import LEVEL_SCHEMA, level_file, read_levels, write_level
from dpcluster.results.records import LayerCount, RoundRecord
from dpcluster.results.store import COMPACTED, compact, compact_tree, rows_written


def _record(job: int, method: str = "imp", accuracy: float | None = None) -> RoundRecord:
    return RoundRecord(
        experiment_id=f"{method}-s{job % 3}", method=method, seed=job % 3, dataset="digits", model="convnet",
        round=job, sparsity=1 - 0.8 ** job, weights_kept=100 - job, weights_total=100,
        test_accuracy=accuracy if accuracy is not None else 0.5 + job / 1000, test_loss=0.1, inner_data="real",
        inner_seconds=1.0, inner_examples=10, validation_seconds=2.0, validation_examples=20,
        mask_search_seconds=float(job), mask_search_examples=10 * job, time_to_mask_seconds=job + 2.0,
        time_to_mask_examples=10 * job + 20, mask_hash=f"h{job}",
        layers=(LayerCount("a.weight", 60 - job, 60), LayerCount("b.weight", 40, 40)), rewind="0ep")


def _write_levels(results: Path, jobs, method: str = "imp") -> dict[str, Path]:
    paths = {}
    for job in jobs:
        name = f"validate-{job:04d}"
        paths[name] = level_file(results, "digits", "convnet", method, name)
        write_level(_record(job, method), 0, paths[name])
    return paths


def _write_stability(folder: Path, jobs) -> None:
    for job in jobs:
        level = {"experiment_id": "imp-s0", "seed": 0, "round": job, "sparsity": 0.2, "images_per_class": 0,
                 "rewind": None}
        rows = [{"alpha": a / 4, "test_loss": 1.0, "test_error": job + a / 4, "instability": 0.1} for a in range(5)]
        write_analysis("stability", level, rows, level_file(folder, "digits", "convnet", "imp", f"stability-{job:04d}"))


def _by_job(table: pa.Table) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in table["round"].to_pylist():
        counts[r] = counts.get(r, 0) + 1
    return counts


def _partition(results: Path, method: str = "imp") -> Path:
    return results / "dataset=digits" / "model=convnet" / f"method={method}"


def test_compaction_keeps_every_row_once_and_readers_answer_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_AT", 10**6)  # the readers do not compact here
    results, analyses = tmp_path / "results", tmp_path / "stability"
    _write_levels(results, range(1, 41))
    _write_levels(results, range(41, 44), method="random")
    _write_stability(analyses, range(1, 11))
    names = [f"validate-{job:04d}" for job in range(1, 44, 2)] + ["validate-nowhere"]
    columns = ["method", "round", "test_accuracy", "layers", "dataset"]
    before = [read_levels(results), read_levels(results, names), read_levels(results, names, columns),
              read_analysis(analyses, "stability"), read_analysis(analyses, "stability", ["stability-0003"])]
    assert before[0].num_rows == 43 and before[1].num_rows == 22 and before[2].column_names == columns
    assert before[4]["test_error"].to_pylist() == [3, 3.25, 3.5, 3.75, 4]

    assert compact_tree(results, LEVEL_SCHEMA) == 2 and compact_tree(analyses, SCHEMAS["stability"]) == 1
    assert sorted(p.name for p in _partition(results).iterdir() if not p.name.startswith(".")) == [COMPACTED]
    compacted = pq.read_table(_partition(results) / COMPACTED)
    assert sorted(compacted["job_id"].to_pylist()) == [f"validate-{job:04d}" for job in range(1, 41)]
    after = [read_levels(results), read_levels(results, names), read_levels(results, names, columns),
             read_analysis(analyses, "stability"), read_analysis(analyses, "stability", ["stability-0003"])]
    for old, new in zip(before, after):
        assert new.equals(old)
    assert _by_job(after[0]) == {job: 1 for job in range(1, 44)}
    assert _by_job(after[3]) == {job: 5 for job in range(1, 11)}
    assert read_levels(results, [], columns).num_rows == 0
    assert read_levels(results, columns=["job_id", "round"]).to_pylist()[0] == {"job_id": "validate-0001", "round": 1}
    # Plain pyarrow, reading the hive folders itself, finds every row too (and after more jobs end, theirs).
    import pyarrow.dataset as ds

    _write_levels(results, range(44, 46))
    plain = ds.dataset(results, format="parquet", partitioning="hive").to_table()
    assert sorted(plain["round"].to_pylist()) == list(range(1, 46))
    for path in _partition(results).glob("validate-004[45].parquet"):
        path.unlink()
    # Nothing new: a second compaction rewrites nothing.
    stamp = (_partition(results) / COMPACTED).stat().st_mtime_ns
    assert not compact(_partition(results), LEVEL_SCHEMA)
    assert (_partition(results) / COMPACTED).stat().st_mtime_ns == stamp


def test_new_small_files_are_read_beside_the_compacted_file_in_job_order(tmp_path):
    results = tmp_path / "results"
    _write_levels(results, range(2, 20, 2))
    compact(_partition(results), LEVEL_SCHEMA)
    _write_levels(results, range(1, 20, 2))
    table = read_levels(results)
    assert table["round"].to_pylist() == list(range(1, 20))
    compact(_partition(results), LEVEL_SCHEMA)
    assert read_levels(results).equals(table)


def test_a_reader_compacts_past_the_threshold_and_a_column_added_later_reads_as_null(tmp_path, monkeypatch):
    results = tmp_path / "results"
    folder = _partition(results)
    folder.mkdir(parents=True)
    # A file from before most columns existed.
    pq.write_table(pa.table({"experiment_id": ["old"], "seed": [0], "round": [99], "sparsity": [0.2],
                             "test_accuracy": [0.8], "images_per_class": [0]}), folder / "validate-old.parquet")
    _write_levels(results, range(1, 5))
    monkeypatch.setattr(store, "COMPACT_AT", 5)
    assert read_levels(results).num_rows == 5 and (folder / "validate-old.parquet").exists()
    _write_levels(results, range(5, 7))
    table = read_levels(results)  # six small files: compacted first
    assert not (folder / "validate-old.parquet").exists() and (folder / COMPACTED).exists()
    rows = {row["round"]: row for row in table.to_pylist()}
    assert len(rows) == 7 and rows[99]["layers"] is None and rows[99]["time_to_mask_seconds"] is None
    assert rows[99]["method"] == "imp" and rows[3]["layers"] == [{"name": "a.weight", "kept": 57, "total": 60},
                                                                 {"name": "b.weight", "kept": 40, "total": 40}]


def test_a_small_file_written_during_a_compaction_survives_it(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _write_levels(results, range(1, 11))
    real = store.write_compacted_file

    def write_while_a_job_ends(folder, rows, empty_jobs=()):
        _write_levels(results, [11])  # after the compactor listed the folder
        real(folder, rows, empty_jobs)

    monkeypatch.setattr(store, "write_compacted_file", write_while_a_job_ends)
    assert compact(_partition(results), LEVEL_SCHEMA)
    assert (_partition(results) / "validate-0011.parquet").exists()
    assert _by_job(read_levels(results)) == {job: 1 for job in range(1, 12)}
    monkeypatch.setattr(store, "write_compacted_file", real)
    assert compact(_partition(results), LEVEL_SCHEMA)
    assert not (_partition(results) / "validate-0011.parquet").exists()
    assert _by_job(read_levels(results)) == {job: 1 for job in range(1, 12)}


def test_a_stale_small_file_is_ignored_then_deleted(tmp_path):
    results = tmp_path / "results"
    paths = _write_levels(results, range(1, 6))
    compact(_partition(results), LEVEL_SCHEMA)
    # The job re-ran after its file was compacted: the compacted row stands, once.
    write_level(_record(3, accuracy=0.01), 0, paths["validate-0003"])
    table = read_levels(results)
    assert _by_job(table) == {job: 1 for job in range(1, 6)} and 0.01 not in table["test_accuracy"].to_pylist()
    stamp = (_partition(results) / COMPACTED).stat().st_mtime_ns
    assert compact(_partition(results), LEVEL_SCHEMA)
    assert not paths["validate-0003"].exists()
    assert (_partition(results) / COMPACTED).stat().st_mtime_ns == stamp  # only deleted, nothing rewritten
    assert read_levels(results).equals(table)


def test_a_compactor_killed_after_writing_leaves_a_correct_state(tmp_path, monkeypatch):
    results = tmp_path / "results"
    paths = _write_levels(results, range(1, 9))
    expected = read_levels(results)

    def killed(paths):
        raise KeyboardInterrupt  # the compacted file is in place, no small file is deleted yet

    monkeypatch.setattr(store, "_delete", killed)
    with pytest.raises(KeyboardInterrupt):
        compact(_partition(results), LEVEL_SCHEMA)
    monkeypatch.undo()
    assert all(p.exists() for p in paths.values()) and (_partition(results) / COMPACTED).exists()
    assert read_levels(results).equals(expected)
    assert all(rows_written(p) for p in paths.values())
    # ... and one killed while writing leaves its temporary file, which readers skip and the next one removes.
    leftover = _partition(results) / f".{COMPACTED}.tmp-dead"
    leftover.write_bytes(b"half a file")
    assert read_levels(results).equals(expected)
    assert compact(_partition(results), LEVEL_SCHEMA)
    assert not leftover.exists() and not any(p.exists() for p in paths.values())
    assert read_levels(results).equals(expected)


def test_a_reader_racing_a_compactor_reads_again(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _write_levels(results, range(1, 11))
    expected = read_levels(results)
    real, raced = store._read_small, []

    def compacted_meanwhile(files, schema):
        if not raced:  # the reader listed the small files; a compactor merges and deletes them now
            raced.append("compacting")
            raced[0] = compact(_partition(results), LEVEL_SCHEMA)
        return real(files, schema)

    monkeypatch.setattr(store, "_read_small", compacted_meanwhile)
    assert read_levels(results).equals(expected)
    assert raced == [True] and not (_partition(results) / "validate-0001.parquet").exists()


def test_a_reader_whose_compacted_file_is_replaced_under_it_reads_again(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _write_levels(results, range(1, 6))
    compact(_partition(results), LEVEL_SCHEMA)
    _write_levels(results, range(6, 11))
    expected = read_levels(results)
    real, calls = store.small_files, []

    def compacted_meanwhile(folder):
        calls.append(folder)
        if len(calls) == 2:  # the reader has opened the old compacted file and now lists the small files
            assert compact(_partition(results), LEVEL_SCHEMA)  # which merges them and deletes them first
        return real(folder)

    monkeypatch.setattr(store, "small_files", compacted_meanwhile)
    assert read_levels(results).equals(expected)
    assert _by_job(expected) == {job: 1 for job in range(1, 11)}


def test_a_held_lock_or_a_read_only_folder_only_reads(tmp_path, monkeypatch):
    results = tmp_path / "results"
    paths = _write_levels(results, range(1, 8))
    expected = read_levels(results)
    with store._locked(_partition(results)) as locked:
        assert locked and not compact(_partition(results), LEVEL_SCHEMA)
    monkeypatch.setattr(store, "COMPACT_AT", 2)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # what a read-only mount answers (root ignores chmod)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert read_levels(results).equals(expected)
    assert not compact(_partition(results), LEVEL_SCHEMA)
    assert all(p.exists() for p in paths.values()) and not (_partition(results) / COMPACTED).exists()
    # A lock file made earlier, a folder read-only now: the compaction gets the lock but cannot write.
    monkeypatch.setattr(os, "open", real_open)
    (_partition(results) / store.LOCK).touch()

    def no_temporary_file(path, write):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(store, "write_atomic", no_temporary_file)
    assert read_levels(results).equals(expected) and all(p.exists() for p in paths.values())


def test_rows_written_before_and_after_compaction(tmp_path, monkeypatch):
    results = tmp_path / "results"
    paths = _write_levels(results, range(1, 6))
    empty = level_file(results, "digits", "convnet", "imp", "validate-empty")
    pq.write_table(LEVEL_SCHEMA.empty_table(), empty)  # a job that had no rows to write is still done
    missing = level_file(results, "digits", "convnet", "imp", "validate-missing")
    assert all(rows_written(p) for p in paths.values()) and rows_written(empty) and not rows_written(missing)
    assert not rows_written(level_file(results, "digits", "convnet", "dense", "validate-0001"))
    compact(_partition(results), LEVEL_SCHEMA)
    assert not any(p.exists() for p in [*paths.values(), empty])
    opened = []
    real = store.pq.ParquetFile
    monkeypatch.setattr(store.pq, "ParquetFile", lambda *a, **k: opened.append(1) or real(*a, **k))
    for _ in range(1000):
        assert all(rows_written(p) for p in paths.values()) and rows_written(empty) and not rows_written(missing)
    assert len(opened) == 1  # the job ids are read once per version of the compacted file
    _write_levels(results, [6])
    compact(_partition(results), LEVEL_SCHEMA)
    opened.clear()
    for _ in range(100):
        assert rows_written(level_file(results, "digits", "convnet", "imp", "validate-0006"))
        assert rows_written(paths["validate-0001"]) and not rows_written(missing)
    assert len(opened) == 1


def _compact_in_a_loop(args) -> list[bool]:
    results, first, barrier = args
    barrier.wait()
    outcomes = []
    for batch in range(4):
        _write_levels(Path(results), range(first + 10 * batch, first + 10 * batch + 10))
        outcomes.append(compact(_partition(Path(results)), LEVEL_SCHEMA))
    return outcomes


def test_two_compactors_in_parallel_processes_lose_no_row(tmp_path):
    results = tmp_path / "results"
    _write_levels(results, range(1000, 1100))
    context = multiprocessing.get_context("spawn")  # no fork of a process running pyarrow's threads
    with context.Manager() as manager, context.Pool(2) as pool:
        barrier = manager.Barrier(2)
        outcomes = pool.map(_compact_in_a_loop, [(str(results), 0, barrier), (str(results), 100, barrier)])
    assert any(any(o) for o in outcomes)
    expected = {job: 1 for job in [*range(40), *range(100, 140), *range(1000, 1100)]}
    assert _by_job(read_levels(results)) == expected
    compact(_partition(results), LEVEL_SCHEMA)
    assert [p.name for p in _partition(results).glob("*.parquet")] == [COMPACTED]
    assert _by_job(read_levels(results)) == expected


def test_the_aggregation_compacts_partitions_of_many_small_files_only(tmp_path):
    from dpcluster.sweeps.aggregate import COMPACT_FROM, aggregate

    _write_levels(tmp_path / "results", range(1, COMPACT_FROM + 1))
    _write_levels(tmp_path / "results", range(101, 103), method="random")
    _write_stability(tmp_path / "analyses" / "stability", range(1, COMPACT_FROM + 1))
    summary = aggregate(tmp_path).to_pylist()
    assert sum(row["test_accuracy_count"] for row in summary) == COMPACT_FROM + 2
    assert [p.name for p in _partition(tmp_path / "results").glob("*.parquet")] == [COMPACTED]
    assert len(list(_partition(tmp_path / "results", "random").glob("validate-*.parquet"))) == 2
    assert [p.name for p in _partition(tmp_path / "analyses" / "stability").glob("*.parquet")] == [COMPACTED]
    assert aggregate(tmp_path, ["validate-0001", "validate-0003", "validate-0101"]).num_rows == 3
