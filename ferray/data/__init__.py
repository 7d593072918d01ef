"""FER datasets: sources, the canonical table, prepared Parquet files, checks and fold plans."""

# Exports load on first use: a fold worker unpickling a FERData needs ferray.data._table
# only, not scikit-learn (fold plans) or the source readers.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "HOLDOUT": "ferray.data._folds",
    "FoldPlan": "ferray.data._folds",
    "plan_folds": "ferray.data._folds",
    "grouped_stratified_folds": "ferray.data._folds",
    "AU_IDS": "ferray.data._table",
    "SPLITS": "ferray.data._table",
    "FERData": "ferray.data._table",
    "read_parquet": "ferray.data._table",
    "write_parquet": "ferray.data._table",
    "TAXONOMIES": "ferray.data._taxonomies",
    "EMOTION_AUS": "ferray.data._taxonomies",
    "generate": "ferray.data._synthetic",
    "parse_synthetic_spec": "ferray.data._synthetic",
    "synthetic_spec": "ferray.data._synthetic",
    "render_grid": "ferray.data._grid",
    "SOURCE_KINDS": "ferray.data._sources",
    "load_source": "ferray.data._sources",
    "prepare": "ferray.data._prepare",
    "check": "ferray.data._check",
    "CheckReport": "ferray.data._check",
    "parse_au_tokens": "ferray.data._rafce",
    "FER2013_CLASSES": "ferray.data._fer2013",
    "FERPLUS_CLASSES": "ferray.data._fer2013",
    "RAFCE_CLASSES": "ferray.data._rafce",
    "RAFDB_CLASSES": "ferray.data._rafce",
    "NEAR_DUPLICATE_DISTANCE": "ferray.data._duplicates",
    "clean_holdout_mask": "ferray.data._duplicates",
    "duplicate_pairs": "ferray.data._duplicates",
    "SUBJECT_SCHEMES": "ferray.data._subjects",
    "detect_subjects": "ferray.data._subjects",
    "BASIC_CONCEPTS": "ferray.data._classes",
    "ClassMap": "ferray.data._classes",
    "canonical_class": "ferray.data._classes",
    "map_class_names": "ferray.data._classes",
    "match_classes": "ferray.data._classes",
    "remap_labels": "ferray.data._classes",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.data._check import CheckReport, check
    from ferray.data._classes import (
        BASIC_CONCEPTS,
        ClassMap,
        canonical_class,
        map_class_names,
        match_classes,
        remap_labels,
    )
    from ferray.data._duplicates import NEAR_DUPLICATE_DISTANCE, clean_holdout_mask, duplicate_pairs
    from ferray.data._fer2013 import FER2013_CLASSES, FERPLUS_CLASSES
    from ferray.data._folds import HOLDOUT, FoldPlan, grouped_stratified_folds, plan_folds
    from ferray.data._grid import render_grid
    from ferray.data._prepare import prepare
    from ferray.data._rafce import RAFCE_CLASSES, RAFDB_CLASSES, parse_au_tokens
    from ferray.data._sources import SOURCE_KINDS, load_source
    from ferray.data._subjects import SUBJECT_SCHEMES, detect_subjects
    from ferray.data._synthetic import generate, parse_synthetic_spec, synthetic_spec
    from ferray.data._table import AU_IDS, SPLITS, FERData, read_parquet, write_parquet
    from ferray.data._taxonomies import EMOTION_AUS, TAXONOMIES
