"""``ferray data check``: figures about a dataset and the problems it has.

Errors (the CLI exits 1): the source cannot be loaded, unreadable image files, classes
without rows, fewer than two classes, no rows. Warnings (exit 0): duplicate images within
or across splits (exact by pixel bytes, near by 64-bit pHash), subjects shared between
splits, classes missing from a split, and whatever the loader reported. The report also
says where subject ids came from (a file naming scheme, ``subject=REGEX``, a label
column, or none, with naming schemes that fit only part of the files) and how class
names were mapped onto canonical ones.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ferray.data._duplicates import NEAR_DUPLICATE_DISTANCE, phashes
from ferray.data._hashing import exact_hashes, group_pairs, near_duplicate_pairs
from ferray.data._sources import _load
from ferray.data._table import SPLITS, FERData
from ferray.errors import DataError

__all__ = ["CheckReport", "check", "NEAR_DUPLICATE_DISTANCE"]

_EXAMPLES = 5


@dataclass
class CheckReport:
    """What :func:`check` found; ``ok`` is false iff there are errors.

    Sections map names to plain figures so that ``to_dict()`` is JSON-ready:
    ``rows`` per split, ``class_counts`` per split, ``imbalance`` (max/min class count per
    split, ``None`` when a class is empty), ``image_sizes``/``image_modes`` seen in the
    source files, ``exact_duplicates``/``near_duplicates`` and ``subject_overlap``;
    ``subjects`` (``from``: where subject ids came from or ``None``, ``count``, ``partial``:
    naming schemes matching only some files) and ``classes`` (``taxonomy``, ``renamed``
    ``{original: canonical}``, ``unknown`` names kept as they are).
    """

    source: str
    kind: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    image_shape: tuple[int, int, int] | None = None
    class_names: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    imbalance: dict[str, float | None] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    image_modes: dict[str, int] = field(default_factory=dict)
    exact_duplicates: dict[str, Any] = field(default_factory=dict)
    near_duplicates: dict[str, Any] = field(default_factory=dict)
    subject_overlap: dict[str, int] | None = None
    subjects: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every section, plus ``ok``."""
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def render(self, rich: bool = True) -> Any:
        """A ``rich`` renderable (or plain text with ``rich=False``) for the terminal."""
        text = self._text()
        if not rich:
            return text
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = [Text(f"{self.source} ({self.kind or 'unknown'})", style="bold")]
        if self.class_counts:
            splits = [s for s in self.rows if s != "all"]
            table = Table(title="rows per class and split")
            table.add_column("class")
            for s in [*splits, "all"]:
                table.add_column(s, justify="right")
            for name in self.class_names:
                table.add_row(name, *(str(self.class_counts[s].get(name, 0)) for s in [*splits, "all"]))
            table.add_row("total", *(str(self.rows[s]) for s in [*splits, "all"]), style="bold")
            table.add_row("imbalance", *(_ratio(self.imbalance.get(s)) for s in [*splits, "all"]))
            parts.append(table)
        parts.append(Text(self._figures()))
        for w in self.warnings:
            parts.append(Text(f"warning: {w}", style="yellow"))
        for e in self.errors:
            parts.append(Text(f"error: {e}", style="bold red"))
        parts.append(Text("OK" if self.ok else f"{len(self.errors)} error(s)", style="green" if self.ok else "red"))
        return Group(*parts)

    def _figures(self) -> str:
        lines = []
        if self.image_shape:
            h, w, c = self.image_shape
            lines.append(f"loaded as {h}x{w}x{c}")
        if self.image_sizes:
            lines.append(f"source image sizes: {_top(self.image_sizes)}")
            lines.append(f"source image modes: {_top(self.image_modes)}")
        for name, d in (("exact duplicates", self.exact_duplicates), ("near duplicates", self.near_duplicates)):
            if d:
                lines.append(
                    f"{name}: {d['groups']} group(s), {d['images']} images, "
                    f"{d['cross_split_groups']} group(s) span splits"
                    + (f" (pHash distance <= {d['threshold']})" if "threshold" in d else "")
                )
        if self.subjects:
            where = self.subjects.get("from")
            if where:
                count = self.subjects.get("count")
                lines.append(f"subjects: {where}" + (f", {count} subjects" if count is not None else ""))
            else:
                lines.append("subjects: none (no naming scheme fits every file; give subject=REGEX)")
            for name, matched in self.subjects.get("partial", {}).items():
                lines.append(f"  naming scheme {name} fits {matched} of {self.rows.get('all', '?')} files only")
        if self.subject_overlap is not None:
            lines.append(f"subjects shared between splits: {self.subject_overlap or 'none'}")
        if self.classes.get("renamed"):
            lines.append(
                "class names mapped: " + ", ".join(f"{o!r} -> {c!r}" for o, c in self.classes["renamed"].items())
            )
        if self.classes.get("unknown"):
            lines.append(f"class names kept as they are (no canonical emotion): {self.classes['unknown']}")
        return "\n".join(lines)

    def _text(self) -> str:
        lines = [f"{self.source} ({self.kind or 'unknown'})"]
        if self.class_counts:
            splits = [*[s for s in self.rows if s != "all"], "all"]
            width = max(len(n) for n in [*self.class_names, "imbalance"]) + 2
            lines.append("class".ljust(width) + "".join(s.rjust(9) for s in splits))
            for name in self.class_names:
                lines.append(
                    name.ljust(width) + "".join(str(self.class_counts[s].get(name, 0)).rjust(9) for s in splits)
                )
            lines.append("total".ljust(width) + "".join(str(self.rows[s]).rjust(9) for s in splits))
            lines.append("imbalance".ljust(width) + "".join(_ratio(self.imbalance.get(s)).rjust(9) for s in splits))
        fig = self._figures()
        if fig:
            lines.append(fig)
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.extend(f"error: {e}" for e in self.errors)
        lines.append("OK" if self.ok else f"{len(self.errors)} error(s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._text()


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.1f}"


def _top(counts: dict[str, int], n: int = 5) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} x{v}" for k, v in items[:n])
    return text + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _components(n: int, a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Connected groups (size >= 2) of the graph with edges ``a[i] - b[i]``."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    groups: dict[int, list[int]] = {}
    for x in set(a.tolist()) | set(b.tolist()):
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def _dup_section(data: FERData, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    groups = _components(len(data), a, b)
    cross = [g for g in groups if len(set(data.splits[g])) > 1]
    pair_splits = Counter("/".join(sorted({str(x), str(y)})) for x, y in zip(data.splits[a], data.splits[b]))
    return {
        "groups": len(groups),
        "images": int(sum(len(g) for g in groups)),
        "pairs": int(len(a)),
        "pairs_by_splits": dict(sorted(pair_splits.items())),
        "within_split_groups": len(groups) - len(cross),
        "cross_split_groups": len(cross),
        "examples": [
            [f"{data.ids[i]} ({data.splits[i]})" for i in g[:_EXAMPLES]] for g in (cross or groups)[:_EXAMPLES]
        ],
    }


def _dup_warning(name: str, d: dict[str, Any]) -> list[str]:
    if not d.get("groups"):
        return []
    out = [
        f"{d['groups']} group(s) of {name} ({d['images']} images; pairs by splits {d['pairs_by_splits']})"
        + (f", e.g. {d['examples'][0]}" if d["examples"] else "")
    ]
    if d["cross_split_groups"]:
        out.append(
            f"{d['cross_split_groups']} group(s) of {name} span splits: evaluation rows leak into training "
            f"(e.g. {d['examples'][0]})"
        )
    return out


def check(
    source: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    near_distance: int = NEAR_DUPLICATE_DISTANCE,
    **options: Any,
) -> CheckReport:
    """Load ``source`` like :func:`load_source` and report figures, warnings and errors.

    Never raises for problems in the data: they become ``report.errors``. Bad arguments
    (an unknown option, ``near_distance`` outside 0..16) still raise :class:`DataError`.
    """
    if isinstance(near_distance, bool) or not isinstance(near_distance, int) or not 0 <= near_distance <= 16:
        raise DataError(f"near_distance is {near_distance!r}, but must be an integer 0..16 (bits of 64)")
    report = CheckReport(source=os.fspath(source))
    try:
        data, info, report.kind = _load(source, size=size, channels=channels, strict=strict, **options)
    except DataError as exc:
        if "is not accepted by" in str(exc):
            raise
        report.errors.append(str(exc))
        return report
    report.errors.extend(f"unreadable image: {m}" for m in info.unreadable)
    report.warnings.extend(w for w in data.warnings if w not in info.unreadable_lines)
    report.image_sizes = dict(info.sizes)
    report.image_modes = dict(info.modes)
    report.subjects = dict(info.subjects)
    if not report.subjects and data.subjects is not None:  # a prepared file or synthetic data
        report.subjects = {"from": "the data's subject column", "count": len(set(map(str, data.subjects)))}
    report.classes = dict(info.classes)
    report.class_names = list(data.class_names)
    if not len(data):
        report.errors.append("the dataset has no rows")
        return report
    report.image_shape = data.image_shape
    present = [s for s in SPLITS if (data.splits == s).any()]
    present += sorted(set(map(str, data.splits)) - set(SPLITS))
    for split in [*present, "all"]:
        mask = slice(None) if split == "all" else data.splits == split
        counts = np.bincount(data.labels[mask], minlength=data.num_classes)
        report.rows[split] = int(counts.sum())
        report.class_counts[split] = {n: int(c) for n, c in zip(data.class_names, counts)}
        report.imbalance[split] = float(counts.max() / counts.min()) if counts.min() > 0 else None
        empty = [n for n, c in zip(data.class_names, counts) if c == 0]
        if empty and split == "all":
            report.errors.append(f"class(es) {empty} have no rows")
        elif empty:
            report.warnings.append(f"split '{split}' has no rows of class(es) {empty}")
    if data.num_classes < 2:
        report.errors.append(f"a FER dataset needs at least 2 classes, found {list(data.class_names)}")

    exact = exact_hashes(data.images)
    ea, eb = group_pairs(exact)
    # identical hashes of different bytes are astronomically unlikely; confirm anyway
    same = np.asarray([np.array_equal(data.images[i], data.images[j]) for i, j in zip(ea, eb)], bool).reshape(-1)
    ea, eb = ea[same], eb[same]
    report.exact_duplicates = _dup_section(data, ea, eb)
    ph = phashes(data)
    na, nb, _ = near_duplicate_pairs(ph, near_distance)
    if len(na):
        not_exact = exact[na] != exact[nb]
        na, nb = na[not_exact], nb[not_exact]
    report.near_duplicates = {"threshold": near_distance, **_dup_section(data, na, nb)}
    report.warnings.extend(_dup_warning("exact duplicate images", report.exact_duplicates))
    report.warnings.extend(
        _dup_warning(f"near-duplicate images (pHash distance <= {near_distance})", report.near_duplicates)
    )

    if data.subjects is not None:
        by_split = {s: set(map(str, data.subjects[data.splits == s])) for s in present}
        report.subject_overlap = {}
        for i, s in enumerate(present):
            for t in present[i + 1 :]:
                shared = by_split[s] & by_split[t]
                if shared:
                    report.subject_overlap[f"{s}/{t}"] = len(shared)
                    report.warnings.append(
                        f"{len(shared)} subject(s) appear in both '{s}' and '{t}', e.g. {sorted(shared)[:_EXAMPLES]}"
                    )
    return report
