"""Where a job's rows go in a partitioned data set (the results, or an analysis), without importing pyarrow:
planning a sweep of tens of thousands of jobs names every job's file, and must stay light.

    ROOT/dataset=D/model=M/method=X/<job id>.parquet      one small file per job (its only writer)
    ROOT/dataset=D/model=M/method=X/compacted.parquet     the partition's finished jobs merged (store.py)
"""

from __future__ import annotations

from pathlib import Path

# The hive partition columns, in folder order: ROOT/dataset=.../model=.../method=...
PARTITIONS = ("dataset", "model", "method")


def partition_dir(root: Path, dataset: str, model: str, method: str) -> Path:
    """The partition folder of ``root`` that holds one data set's, model's and method's rows."""
    return Path(root) / f"dataset={dataset}" / f"model={model}" / f"method={method}"


def level_file(results_dir: Path, dataset: str, model: str, method: str, name: str) -> Path:
    """The small file of job ``name`` in its partition."""
    return partition_dir(results_dir, dataset, model, method) / f"{name}.parquet"
