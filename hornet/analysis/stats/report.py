"""Render rows of results as a rich table, CSV or markdown."""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "format_metric", "is_fraction", "render_table", "to_csv", "to_markdown"]

FORMATS = ("table", "csv", "markdown")
# scores kept as fractions in [0, 1] in files (metrics.csv, results.csv) and shown as percentages to a reader
FRACTION = re.compile(r"(^|[/_])(top\d+|mIoU|aAcc|mAcc|IoU|(bbox|segm)_(mAP|AP\w*))(_ema)?($|/)")


def is_fraction(name: str) -> bool:
    """Whether the metric or results.csv column ``name`` is a score in [0, 1] (top-1, mIoU, mAP, ...)."""
    return bool(FRACTION.search(name))


def format_metric(name: str, value: float) -> str:
    """``name=value`` for a reader: scores as percentages (val/top1=62.60%), the rest to 4 significant digits."""
    return f"{name}={100 * value:.2f}%" if is_fraction(name) else f"{name}={value:.4g}"


def to_csv(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: Sequence[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_table(rows: Sequence[dict], *, fmt: str = "table", title: str = "", console: Console | None = None) -> None:
    """Print ``rows`` (dicts with the same keys) in ``fmt``: a rich table, CSV or markdown."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")
    if not rows:
        raise ValueError("nothing to show: no rows")
    if fmt == "csv":
        sys.stdout.write(to_csv(rows))
        return
    if fmt == "markdown":
        sys.stdout.write(to_markdown(rows))
        return
    table = Table(title=Text(title) if title else None)  # cells and title are text, never markup
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row.values()))
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))  # pipes and logs: never truncate cells
    console.print(table)
