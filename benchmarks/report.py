"""The figures as a text table, as JSON, and as a PNG chart of the ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.results import Figure, Row, Series


def number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:,.1f} ms"
    if unit in ("ms", "MiB", "% of a core", "replicas"):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def spread(series: Series) -> str:
    if len(series.samples) < 2:
        return ""
    return f"[{number(series.low, series.unit)} .. {number(series.high, series.unit)}]"


def ratio_text(row: Row) -> str:
    if row.ratio is None or row.ceiling is None:
        return ""
    ratios = row.ratios
    text = f"{row.ratio:.2f} of {row.ceiling.name}"
    if len(ratios) > 1:
        text += f" [{min(ratios):.2f} .. {max(ratios):.2f}]"
    return text


def verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return f"{'met' if row.met else 'MISSED'} ({row.target})"


def table(figures: list[Figure]) -> str:
    lines: list[str] = []
    for figure in figures:
        lines.append(f"\n{figure.number}. {figure.title}")
        for row in figure.rows:
            values = f"{number(row.subject.median, row.subject.unit)} {spread(row.subject)}"
            lines.append(f"   {row.label:<52} {values:<40} {ratio_text(row):<48} {verdict(row)}")
            for name, series in row.extra.items():
                extra = f"{number(series.median, series.unit)} {spread(series)}"
                lines.append(f"   {'  ' + name:<52} {extra}")
        lines.extend(f"   note: {note}" for note in figure.notes)
        lines.extend(
            f"   {reason}" if reason.startswith("FAILED") else f"   SKIPPED: {reason}"
            for reason in figure.skipped
        )
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_chart(path: Path, figures: list[Figure], title: str) -> None:
    """One bar per compared row: the median ratio, min..max whiskers, the target as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(figure.number, row) for figure in figures for row in figure.rows if row.ratio]
    if not rows:
        return
    labels = [f"{number}. {row.label}" for number, row in rows]
    medians = [row.ratio or 0.0 for _, row in rows]
    errors = [
        [m - min(row.ratios) for m, (_, row) in zip(medians, rows, strict=True)],
        [max(row.ratios) - m for m, (_, row) in zip(medians, rows, strict=True)],
    ]
    colours = [
        "#bbbbbb" if row.met is None else "#4caf50" if row.met else "#e53935" for _, row in rows
    ]
    figure_, axes = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.6))
    positions = list(range(len(rows)))[::-1]
    axes.barh(positions, medians, xerr=errors, color=colours, capsize=3)
    for position, (_, row) in zip(positions, rows, strict=True):
        if row.target is not None:
            axes.plot([row.target.bound] * 2, [position - 0.4, position + 0.4], color="black")
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel("ratio to the ceiling measured in the same run (times: lower is better)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure_.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure_.savefig(path, dpi=110)
    plt.close(figure_)
