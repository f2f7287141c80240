"""The report folder: Markdown, CSV and (when matplotlib is installed) PNG figures.

    rep = Report("out/road")
    rep.csv("quality.csv", rows)                       # rows: list of dicts, one per line
    rep.add("## 1. Quality", markdown_table(rows, COLUMNS))
    rep.figure("gradient_flow.png", draw)              # draw(plt) makes one figure
    rep.write()                                        # -> out/road/report.md

matplotlib is an optional extra (``pip install -e ".[extras]"``). Without it
the Markdown and the CSV files are still written, and ``figure`` records that
the plot was skipped, which the report then says in one line.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Report", "markdown_table", "fmt", "pyplot"]


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def fmt(value: Any, spec: str = "") -> str:
    """One table cell: numbers through ``spec`` (e.g. ".3f", ",d"), None and NaN as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec and isinstance(value, (int, float)):
        return format(value, spec)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table; ``columns`` are (key in the row, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(fmt(r.get(k), spec) for k, _, spec in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


class Report:
    """Collects Markdown sections, CSV files and figures under one folder."""

    def __init__(self, out_dir: str, plots: bool = True):
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self.plt = pyplot() if plots else None
        self.parts: list[str] = []
        self.files: list[str] = []
        self.skipped_figures: list[str] = []

    @property
    def plots_available(self) -> bool:
        return self.plt is not None

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def add(self, *markdown: str) -> None:
        self.parts.extend(markdown)

    def csv(self, name: str, rows: Sequence[dict]) -> str:
        """Write ``rows`` as CSV (columns: the union of keys, in first-seen order)."""
        keys: list[str] = []
        for r in rows:
            keys.extend(k for k in r if k not in keys)
        with open(self.path(name), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        self.files.append(name)
        return name

    def figure(self, name: str, draw: Callable[[Any], None], caption: str) -> str:
        """Draw one figure with ``draw(plt)`` into ``name`` and return the Markdown
        that shows it (or a note that it was skipped)."""
        if self.plt is None:
            self.skipped_figures.append(name)
            return f"*(figure `{name}` skipped: matplotlib is not installed)*"
        plt = self.plt
        draw(plt)
        plt.tight_layout()
        plt.savefig(self.path(name), dpi=110)
        plt.close("all")
        self.files.append(name)
        return f"![{caption}]({name})\n\n*{caption}*"

    def write(self, name: str = "report.md") -> str:
        text = "\n\n".join(self.parts).rstrip() + "\n"
        with open(self.path(name), "w", encoding="utf-8") as f:
            f.write(text)
        return self.path(name)
