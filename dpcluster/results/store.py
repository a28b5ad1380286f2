"""The partitioned data sets (the results, each analysis) on disk: small files per job, compacted per partition.

Every job writes its rows to a small file of its own, ``<job id>.parquet`` in its partition folder (one writer per
job, on any node; see ``paths.py``). Tens of thousands of small files are slow to read and each costs an inode on
a cluster's file system, so a partition's small files are merged into one compacted file and then deleted:

- ``compacted.parquet`` holds every row it covers, sorted by job id, with a ``job_id`` column (readers filter on
  it), and names in its metadata the jobs it covers that have no rows. One name, replaced atomically: it is
  always the partition's newest compacted file.
- A compaction holds an exclusive non-blocking ``flock`` on ``.compact.lock`` in the folder; whoever does not get
  it (another compactor, on this host or another host of a shared file system) just reads, and so does whoever
  cannot write the folder. Across hosts this needs a file system whose ``flock`` reaches every client (NFSv4;
  Lustre mounted with ``flock``); where ``flock`` fails outright, nobody compacts.
- It writes the new compacted file (the old one's rows and every small file it did not cover) to a temporary
  name, renames it into place, and only then deletes the small files it merged and the stale ones (of jobs it
  already covered). Killed at any point, the folder holds the old compacted file and every small file, or the new
  one and some small files it covers, which readers skip.
- Readers take the compacted file and the small files whose job it does not cover, and check at the end that
  the compacted file is still the one they opened: if a compactor replaced it meanwhile (or removed a small file
  they listed), they read the partition again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError
from dpcluster.results.paths import PARTITIONS

# A reader compacts a partition holding more small files than this before reading it (tests lower it): below it,
# reading the small files costs little and a compaction (which rewrites the partition) would cost more.
COMPACT_AT = 32
# Not hidden (pyarrow's own dataset reader skips names that start with "_" or "."), so reading the folder with plain
# pyarrow finds every row too; it cannot be a job's file (job ids are "<kind>-<hash>").
COMPACTED = "compacted.parquet"
LOCK = ".compact.lock"
JOB_ID = "job_id"
JOB_ID_FIELD = pa.field(JOB_ID, pa.string(), nullable=False)
# Rows per row group of a compacted file: a few per partition, so a large one reads on every core.
ROW_GROUP = 65_536
_EMPTY_JOBS = b"dpcluster.empty_jobs"
_LOCAL = pyarrow.fs.LocalFileSystem()
_ATTEMPTS = 20

Identity = tuple[int, int, int]


class _Raced(Exception):
    """A compactor changed the partition while it was being read."""


def _vanished(error: OSError) -> bool:
    # ESTALE: NFS's answer for a file another client replaced while this one had it open.
    return isinstance(error, FileNotFoundError) or error.errno == errno.ESTALE


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _compacted_identity(folder: Path) -> Identity | None:
    try:
        return _identity(os.stat(folder / COMPACTED))
    except (FileNotFoundError, NotADirectoryError):  # no compacted file, or no folder (a file in its place)
        return None


# --- the folders ----------------------------------------------------------------------------------------------

def partition_dirs(root: Path) -> list[Path]:
    """The partition folders under ``root`` (``dataset=…/model=…/method=…``), in path order."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("/".join("*=*" for _ in PARTITIONS)) if p.is_dir())


def partition_values(root: Path, folder: Path) -> dict[str, str]:
    """The hive partition values in ``folder``'s path below ``root`` (URI-decoded, as pyarrow writes them)."""
    pairs = (part.partition("=") for part in Path(folder).relative_to(root).parts)
    return {key: unquote(value) for key, _, value in pairs}


def small_files(folder: Path) -> dict[str, Path]:
    """A partition's small files by job id (not the compacted file, the lock or anyone's temporary files)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name[:-len(".parquet")]: Path(e.path) for e in entries
                    if e.name.endswith(".parquet") and e.name != COMPACTED and not e.name.startswith((".", "_"))}
    except (FileNotFoundError, NotADirectoryError):
        return {}


# --- which jobs a compacted file covers -----------------------------------------------------------------------

# Per partition folder: the identity (inode, mtime, size) of the compacted file last read and the job ids it
# covers, so asking again costs a stat until a compaction replaces the file.
_COVERED: dict[str, tuple[Identity, frozenset[str]]] = {}


def _empty_jobs(compacted: pq.ParquetFile) -> set[str]:
    """The jobs a compacted file covers that wrote no rows (a job with nothing to write is still done)."""
    return set(json.loads((compacted.metadata.metadata or {}).get(_EMPTY_JOBS, b"[]")))


def _covered(compacted: pq.ParquetFile, rows: pa.Table | None = None) -> frozenset[str]:
    """The job ids an opened compacted file covers (from ``rows`` of it with ``job_id``, when already read)."""
    ids = (rows if rows is not None else compacted.read(columns=[JOB_ID]))[JOB_ID]
    return frozenset(pc.unique(ids).to_pylist()) | _empty_jobs(compacted)


def covered_ids(folder: Path) -> frozenset[str]:
    """The job ids a partition's compacted file covers (none without one); the file is read once per version."""
    folder = Path(folder)
    for _ in range(_ATTEMPTS):
        identity = _compacted_identity(folder)
        if identity is None:
            return frozenset()
        cached = _COVERED.get(str(folder))
        if cached is not None and cached[0] == identity:
            return cached[1]
        try:
            with open(folder / COMPACTED, "rb") as handle:
                opened, covered = _identity(os.fstat(handle.fileno())), _covered(pq.ParquetFile(handle))
        except OSError as error:
            if _vanished(error):
                continue
            raise
        _COVERED[str(folder)] = (opened, covered)
        return covered
    raise RuntimeError(f"{folder}: its compacted file changed on each of {_ATTEMPTS} reads")


def rows_written(path: Path) -> bool:
    """Whether the rows of the job whose small file is ``path`` are in the data set: the small file is there, or
    its partition's compacted file covers ``path.stem``. A stat or two a call: jobs ask it for every job."""
    path = Path(path)
    # The small file first: a compaction renames its compacted file into place before deleting what it merged.
    return path.exists() or path.stem in covered_ids(path.parent)


# --- reading --------------------------------------------------------------------------------------------------

def _present(available: pa.Schema, schema: pa.Schema) -> list[str]:
    return [name for name in schema.names if available.get_field_index(name) >= 0]


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with exactly ``schema``'s columns: one the file lacks (written before it existed) as nulls, the
    others cast to the schema's types."""
    columns = []
    for field in schema:
        if field.name in rows.column_names:
            column = rows[field.name]
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _open_compacted(handle) -> pq.ParquetFile:
    """A compacted file, with the strings nested in lists (the levels' layer names) read as dictionaries, which
    ``_conform`` casts back: decoding a million levels' eight million names one by one is most of reading them,
    and a dictionary and one cast take half the time or less."""
    plain = pq.ParquetFile(handle)
    leaves = [plain.schema.column(i) for i in range(len(plain.schema))]
    nested = [leaf.path for leaf in leaves if "." in leaf.path and leaf.physical_type == "BYTE_ARRAY"]
    return pq.ParquetFile(handle, metadata=plain.metadata, read_dictionary=nested) if nested else plain


def _read_compacted(compacted: pq.ParquetFile, schema: pa.Schema) -> pa.Table:
    return _conform(compacted.read(columns=_present(compacted.schema_arrow, schema)), schema)


def _read_small(files: Sequence[tuple[str, Path]], schema: pa.Schema) -> pa.Table:
    """The small files ``(job id, path)``, in that order, with ``schema`` (file columns, then ``job_id``, which
    their names give). pyarrow's scanner reads them together, on every core, with the schema's nulls and casts:
    one tiny file alone costs a millisecond to open. Raises ``_Raced`` where one is gone."""
    columns = pa.schema([field for field in schema if field.name != JOB_ID])
    if not files:
        return schema.empty_table()
    job_of = {str(path): job for job, path in files}
    dataset = ds.FileSystemDataset.from_paths(list(job_of), schema=columns, format=ds.ParquetFileFormat(),
                                              filesystem=_LOCAL)
    batches, ids = [], []
    try:
        for tagged in dataset.scanner(columns=columns.names).scan_batches():
            batches.append(tagged.record_batch)
            ids.extend([job_of[tagged.fragment.path]] * tagged.record_batch.num_rows)
    except OSError as error:
        if _vanished(error):
            raise _Raced(str(error)) from error
        raise
    rows = pa.Table.from_batches(batches, schema=columns)
    return rows.append_column(JOB_ID_FIELD, pa.array(ids, pa.string())).combine_chunks()


def _by_job(rows: pa.Table) -> pa.Table:
    # Stable: each job's rows keep their order (a landscape's grid).
    return rows.take(pc.sort_indices(rows, [(JOB_ID, "ascending")]))


def _jobs_in(jobs: list[str], ids: pa.Array | pa.ChunkedArray) -> list[bool]:
    """Which of ``jobs`` are among ``ids`` (a million, say), hashed by pyarrow rather than in a Python set."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return pc.is_in(pa.array(jobs, pa.string()), value_set=ids).to_pylist()


def _read_partition_once(folder: Path, schema: pa.Schema, value_set: pa.Array | None) -> pa.Table:
    parts, empty, identity = [], set(), None
    try:
        handle = open(folder / COMPACTED, "rb")
    except FileNotFoundError:
        handle = None
    try:
        if handle is not None:
            identity = _identity(os.fstat(handle.fileno()))
            compacted = _open_compacted(handle)
            parts.append(_read_compacted(compacted, schema))
            empty = _empty_jobs(compacted)
    except OSError as error:
        if _vanished(error):
            raise _Raced(str(folder)) from error
        raise
    finally:
        if handle is not None:
            handle.close()
    # Listed after the compacted file was opened: a compactor deletes small files only after replacing it.
    fresh = sorted(small_files(folder).items())
    if fresh and parts:
        covered = _jobs_in([job for job, _ in fresh], parts[0][JOB_ID])
        fresh = [(job, path) for (job, path), done in zip(fresh, covered) if not done and job not in empty]
    if fresh and value_set is not None:
        fresh = [item for item, keep in zip(fresh, _jobs_in([job for job, _ in fresh], value_set)) if keep]
    if fresh:
        parts.append(_read_small(fresh, schema))
    if _compacted_identity(folder) != identity:
        raise _Raced(str(folder))
    rows = pa.concat_tables(parts) if parts else schema.empty_table()
    # In the order one small file per job would read: by job id.
    return _by_job(rows) if len(parts) > 1 else rows


def _unreadable(folder: Path, error: Exception) -> UserError:
    """A partition whose files do not read (one cut short, or not Parquet): one line naming the first bad one."""
    for path in [folder / COMPACTED, *small_files(folder).values()]:
        try:
            if path.exists():
                pq.read_metadata(path)
        except (pa.ArrowInvalid, OSError):
            return UserError(f"{path}: not a readable Parquet file (cut short or corrupt); delete it, and run the "
                             f"sweep's command again: the jobs whose rows it held run again")
    return UserError(f"{folder}: its Parquet files do not read: {type(error).__name__}: "
                     f"{(str(error).splitlines() or [''])[0]}")


def _read_partition(folder: Path, schema: pa.Schema, value_set: pa.Array | None) -> pa.Table:
    """One partition's rows with ``schema`` (file columns and ``job_id``): its compacted file's (all of them:
    the caller filters every partition's at once, as ``is_in`` hashes its ids once a call) and those of its
    small files that the compacted file does not cover, of the jobs in ``value_set`` (all for None); read again
    where a compactor changed the folder meanwhile."""
    for attempt in range(_ATTEMPTS):
        try:
            return _read_partition_once(folder, schema, value_set)
        except _Raced:
            time.sleep(0.01 * attempt)
        except pa.ArrowInvalid as error:
            raise _unreadable(folder, error) from None
    raise RuntimeError(f"{folder}: changed by a compactor during each of {_ATTEMPTS} reads")


def read_rows(root: Path, file_schema: pa.Schema, partitioning: pa.Schema, names: Iterable[str] | None = None,
              columns: Sequence[str] | None = None) -> pa.Table:
    """Every row under ``root`` (or those of the job ids ``names``), with ``file_schema`` and the typed partition
    columns (``columns`` of them, in that order; ``job_id`` too on request); a partition of more than
    ``COMPACT_AT`` small files is compacted first where the folder allows it."""
    root = Path(root)
    schema = pa.unify_schemas([file_schema, partitioning])
    columns = list(schema.names if columns is None else columns)
    unknown = [c for c in columns if c != JOB_ID and schema.get_field_index(c) < 0]
    if unknown:
        raise ValueError(f"no column {', '.join(unknown)} in {root} (columns: {', '.join(schema.names)})")
    file_columns = pa.schema([f for f in file_schema if f.name in columns] + [JOB_ID_FIELD])
    value_set = None if names is None else pa.array(list(names), pa.string())
    tables = []
    for folder in partition_dirs(root):
        if len(small_files(folder)) > COMPACT_AT:
            compact(folder, file_schema)
        rows = _read_partition(folder, file_columns, value_set)
        values = partition_values(root, folder)
        for field in partitioning:
            if field.name in columns:
                value = values.get(field.name)
                rows = rows.append_column(field, pa.nulls(rows.num_rows, field.type) if value is None else
                                          pa.repeat(pa.scalar(value).cast(field.type), rows.num_rows))
        tables.append(rows)
    if not tables:
        return pa.schema([JOB_ID_FIELD if c == JOB_ID else schema.field(c) for c in columns]).empty_table()
    rows = pa.concat_tables(tables)
    if value_set is not None:
        keep = pc.is_in(rows[JOB_ID], value_set=value_set)
        rows = rows if pc.all(keep).as_py() else rows.filter(keep)
    return rows.select(columns)


# --- compacting -----------------------------------------------------------------------------------------------

@contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Whether this process holds the partition's compaction lock (held until the block ends)."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a folder this process cannot write (read-only, another user's): it only reads
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another compactor has it (EWOULDBLOCK), or the file system has no flock (ENOLCK)
                os.close(fd)
                fd = None
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def write_compacted_file(folder: Path, rows: pa.Table, empty_jobs: Iterable[str] = ()) -> None:
    """``rows`` (file columns and ``job_id``) as the partition's compacted file, sorted by job id and written
    atomically, covering their jobs and ``empty_jobs`` (jobs that wrote no rows)."""
    metadata = {**(rows.schema.metadata or {}), _EMPTY_JOBS: json.dumps(sorted(set(empty_jobs))).encode()}
    # Stored with every column nullable: a file from before a column existed has nulls in it (readers give the
    # project's schema back).
    stored = pa.schema([field.with_nullable(True) for field in rows.schema], metadata=metadata)
    rows = _by_job(rows).cast(stored)
    write_atomic(Path(folder) / COMPACTED, lambda handle: pq.write_table(rows, handle, row_group_size=ROW_GROUP))


def _delete(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # not ours to delete (another user's, in a shared folder): covered, so readers skip it
            pass


def _merge(folder: Path, file_schema: pa.Schema) -> list[Path]:
    """Under the lock: the compacted file rewritten with the small files it does not cover; returns the small
    files it now covers (merged now, or stale: of jobs it covered already), to delete."""
    schema = file_schema.append(JOB_ID_FIELD)
    parts, covered, empty = [], frozenset(), set()
    if (folder / COMPACTED).exists():  # nobody else replaces it while the lock is held
        with open(folder / COMPACTED, "rb") as handle:
            compacted = _open_compacted(handle)
            parts.append(_read_compacted(compacted, schema))
            covered = _covered(compacted, parts[0])
            empty = _empty_jobs(compacted)
    small = small_files(folder)
    fresh = sorted((job, path) for job, path in small.items() if job not in covered)
    if fresh:
        rows = _read_small(fresh, schema)
        with_rows = set(pc.unique(rows[JOB_ID]).to_pylist())
        write_compacted_file(folder, pa.concat_tables([*parts, rows]),
                             empty | {job for job, _ in fresh if job not in with_rows})
    return [path for _, path in fresh] + [path for job, path in small.items() if job in covered]


def compact(folder: Path, file_schema: pa.Schema, at_least: int = 1) -> bool:
    """Merge a partition's small files into its compacted file and delete them, when it holds at least
    ``at_least`` of them and no other compactor holds it; returns whether it compacted. A folder that cannot be
    written is left as it is."""
    folder = Path(folder)
    small = small_files(folder)
    if not small or len(small) < at_least:
        return False
    with _locked(folder) as locked:
        if not locked:
            return False
        try:
            for leftover in folder.glob(f".{COMPACTED}.tmp-*"):  # a killed compactor's (only the lock's holder
                leftover.unlink(missing_ok=True)                  # writes them)
            covered = _merge(folder, file_schema)
        except _Raced:  # a small file deleted by hand meanwhile (no compactor could): leave it to the next one
            return False
        except pa.ArrowInvalid as error:
            raise _unreadable(folder, error) from None
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # read-only: only read it
                return False
            raise
        _delete(covered)
    return True


def compact_tree(root: Path, file_schema: pa.Schema, at_least: int = 1) -> int:
    """Compact every partition under ``root`` holding at least ``at_least`` small files; returns how many."""
    return sum(compact(folder, file_schema, at_least) for folder in partition_dirs(root))
