"""Round records and their Parquet files.

The names are loaded on first use (PEP 562), so importing a pyarrow-free submodule (``dpcluster.results.paths``,
which sweep planning uses for every job) does not load pyarrow through this package."""

from __future__ import annotations

__all__ = ["LayerCount", "RoundRecord", "read_records", "write_records"]


def __getattr__(name: str):
    if name in __all__:
        from dpcluster.results import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
