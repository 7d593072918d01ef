"""An MkDocs hook: the CLI reference page is the parser's own ``--help``, never a copy of it.

``docs/cli.md`` holds the marker ``<!-- ferray-cli-reference -->``; at build time it becomes
one section per command (``ferray data prepare``, ``ferray search``, ...) with the text
``ferray COMMAND --help`` prints, at a fixed width.
"""

from __future__ import annotations

import os

MARKER = "<!-- ferray-cli-reference -->"
WIDTH = "100"

#: The page that explains each command (its first word, or its two words).
PAGES = {
    "data": ("Data sources", "data.md"),
    "data folds": ("Fold plans & leakage", "folds.md"),
    "doctor": ("Ray internals and ferray doctor", "concepts.md#ray-internals-and-ferray-doctor"),
    "train": ("Training", "training.md"),
    "search": ("Running a search", "search.md"),
    "status": ("Running a search", "search.md#ferray-status"),
    "resume": ("Resume", "resume.md"),
    "prune": ("Retention", "retention.md#ferray-prune"),
    "ensemble": ("Ensembles", "ensembles.md"),
    "distill": ("Distillation", "distillation.md"),
    "export": ("Export & predict", "export-predict.md"),
    "predict": ("Export & predict", "export-predict.md#predicting"),
    "report": ("Reports & explanations", "reports.md#ferray-report-runbundle"),
    "evaluate": ("Reports & explanations", "reports.md#cross-dataset-scores-and-confidence-intervals"),
    "explain": ("Reports & explanations", "reports.md"),
    **{w: ("Clusters", "clusters.md#what-ferray-submit-does") for w in ("submit", "jobs", "logs", "stop")},
    "pull": ("Clusters", "clusters.md#the-run-directory-on-storage"),
}


def reference() -> str:
    from ferray.cli import _build_parser, iter_commands

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps help at the terminal's width
    try:
        parser = _build_parser()
        parts = ["## `ferray`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for words, sub, summary in iter_commands(parser):
            parts += [f"## `ferray {' '.join(words)}`", ""]
            line = summary[0].upper() + summary[1:] + "." if summary else ""
            title, link = PAGES.get(" ".join(words)) or PAGES.get(words[0]) or (None, None)
            if link:
                line += f" Explained in [{title}]({link})."
            if line:
                parts += [line.strip(), ""]
            parts += ["```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown
