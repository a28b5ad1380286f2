"""Round records and their Parquet files."""

from dpcluster.results.records import LayerCount, RoundRecord, read_records, write_records

__all__ = ["LayerCount", "RoundRecord", "read_records", "write_records"]
