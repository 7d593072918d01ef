"""FER datasets: sources, the canonical table, prepared Parquet files, checks and fold plans."""

from ferray.data._table import AU_IDS, SPLITS, FERData, read_parquet, write_parquet

__all__ = [
    "AU_IDS",
    "SPLITS",
    "FERData",
    "read_parquet",
    "write_parquet",
]
