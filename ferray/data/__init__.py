"""FER datasets: sources, the canonical table, prepared Parquet files, checks and fold plans."""

# Exports load on first use: a fold worker unpickling a FERData needs ferray.data._table
# only, not scikit-learn (fold plans) or the source readers.
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

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
    "EMOTION_AUS": "ferray.data._taxonomies",
    "TAXONOMIES": "ferray.data._taxonomies",
    "generate": "ferray.data._synthetic",
    "parse_synthetic_spec": "ferray.data._synthetic",
    "render_grid": "ferray.data._grid",
    "synthetic_spec": "ferray.data._synthetic",
    "FER2013_CLASSES": "ferray.data._fer2013",
    "FERPLUS_CLASSES": "ferray.data._fer2013",
    "RAFCE_CLASSES": "ferray.data._rafce",
    "RAFDB_CLASSES": "ferray.data._rafce",
    "parse_au_tokens": "ferray.data._rafce",
    "SOURCE_KINDS": "ferray.data._sources",
    "load_source": "ferray.data._sources",
    "prepare": "ferray.data._prepare",
    "CheckReport": "ferray.data._check",
    "check": "ferray.data._check",
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

__all__ = [
    "HOLDOUT",
    "FoldPlan",
    "plan_folds",
    "grouped_stratified_folds",
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
    "parse_au_tokens",
    "FER2013_CLASSES",
    "FERPLUS_CLASSES",
    "RAFCE_CLASSES",
    "RAFDB_CLASSES",
    "NEAR_DUPLICATE_DISTANCE",
    "clean_holdout_mask",
    "duplicate_pairs",
    "SUBJECT_SCHEMES",
    "detect_subjects",
    "BASIC_CONCEPTS",
    "ClassMap",
    "canonical_class",
    "map_class_names",
    "match_classes",
    "remap_labels",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ferray.data' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if _TYPE_CHECKING:  # pragma: no cover - for static analysers only
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
