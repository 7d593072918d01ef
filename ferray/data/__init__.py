"""FER datasets: sources, the canonical table, prepared Parquet files, checks and fold plans."""

from ferray.data._folds import HOLDOUT, FoldPlan, plan_folds
from ferray.data._table import AU_IDS, SPLITS, FERData, read_parquet, write_parquet
from ferray.data._synthetic import (
    EMOTION_AUS,
    TAXONOMIES,
    generate,
    parse_synthetic_spec,
    render_grid,
    synthetic_spec,
)
from ferray.data._images import decode_image
from ferray.data._fer2013 import FER2013_CLASSES, FERPLUS_CLASSES
from ferray.data._rafce import RAFCE_CLASSES, RAFDB_CLASSES, parse_au_tokens
from ferray.data._sources import SOURCE_KINDS, load_source
from ferray.data._prepare import prepare
from ferray.data._check import CheckReport, check

__all__ = [
    "HOLDOUT",
    "FoldPlan",
    "plan_folds",
    "AU_IDS",
    "SPLITS",
    "FERData",
    "read_parquet",
    "write_parquet",
    "TAXONOMIES",
    "EMOTION_AUS",
    "generate",
    "parse_synthetic_spec",
    "synthetic_spec",
    "render_grid",
    "SOURCE_KINDS",
    "load_source",
    "prepare",
    "check",
    "CheckReport",
    "decode_image",
    "parse_au_tokens",
    "FER2013_CLASSES",
    "FERPLUS_CLASSES",
    "RAFCE_CLASSES",
    "RAFDB_CLASSES",
]
