"""Repeated samples, ratios to a ceiling measured in the same run, and the targets they meet."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class Series:
    """One quantity measured once per repeat, e.g. calls/s of one server."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "samples": self.samples,
            "median": self.median,
            "min": self.low,
            "max": self.high,
        }


@dataclass(frozen=True)
class Target:
    """What the ratio subject/ceiling must be: at least (`>=`) or at most (`<=`) `bound`."""

    kind: Literal[">=", "<="]
    bound: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.kind == ">=" else ratio <= self.bound

    def __str__(self) -> str:
        return f"{self.kind} {self.bound:g}"


@dataclass
class Row:
    """A subject next to its ceiling; the ratio pairs samples taken in the same repeat."""

    label: str
    subject: Series
    ceiling: Series | None = None
    target: Target | None = None
    extra: dict[str, Series] = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        if self.ceiling is None:
            return []
        return [s / c for s, c in zip(self.subject.samples, self.ceiling.samples, strict=True)]

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.target.met(self.ratio)

    def summary(self) -> dict[str, Any]:
        ratios = self.ratios
        return {
            "label": self.label,
            "subject": self.subject.summary(),
            "ceiling": self.ceiling.summary() if self.ceiling else None,
            "ratio": {
                "samples": ratios,
                "median": self.ratio,
                "min": min(ratios),
                "max": max(ratios),
            }
            if ratios
            else None,
            "target": str(self.target) if self.target else None,
            "met": self.met,
            "extra": {key: series.summary() for key, series in self.extra.items()},
        }


@dataclass
class Figure:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "rows": [row.summary() for row in self.rows],
            "notes": self.notes,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run: full (the figures) or quick (development)."""

    mode: str
    repeats: int
    stored: tuple[int, ...]
    main_stored: int
    execution_operations: int
    create_operations: int
    creates_per_repeat: int
    load_seconds: float
    warmup_seconds: float
    replicas: tuple[int, ...]

    def summary(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan(
    mode="full",
    repeats=3,
    stored=(10_000, 100_000, 1_000_000),
    main_stored=100_000,
    execution_operations=10_000,
    create_operations=1_000,
    creates_per_repeat=5,
    load_seconds=5,
    warmup_seconds=1,
    replicas=(1, 2, 3),
)
QUICK = Plan(
    mode="quick",
    repeats=1,
    stored=(1_000, 10_000),
    main_stored=10_000,
    execution_operations=1_000,
    create_operations=1_000,
    creates_per_repeat=3,
    load_seconds=2,
    warmup_seconds=0.5,
    replicas=(1, 2),
)
