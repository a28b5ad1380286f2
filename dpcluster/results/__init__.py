"""Round records and their Parquet files."""

from dpcluster.results.records import RoundRecord, read_records, write_records

__all__ = ["RoundRecord", "read_records", "write_records"]
