"""What a case reports: timed series, pairwise comparisons against goals, checks, scaling."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.harness import Series, Stats


@dataclass(frozen=True)
class Comparison:
    """`ours` against `reference`, ratio of wall times taken round by round."""

    ours: str
    reference: str
    ratio: Stats
    goal: float | None = None
    """Largest acceptable median ratio; None for a comparison shown for context only."""

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.ratio.median <= self.goal


@dataclass(frozen=True)
class Check:
    """A goal that is not a time ratio (peak memory, builds, uploads, pushed layers, correctness)."""

    what: str
    value: str
    goal: str
    met: bool | None
    """None: recorded, with no goal to meet."""


@dataclass(frozen=True)
class ScalePoint:
    size: int
    """Files or environments."""
    seconds: Stats
    peak_rss_mib: float
    megabytes: float | None = None
    """Input volume, when it does not grow in proportion to `size`."""


@dataclass(frozen=True)
class Scaling:
    label: str
    unit: str
    points: tuple[ScalePoint, ...]


@dataclass
class CaseResult:
    name: str
    title: str
    series: list[Series] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    scaling: list[Scaling] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    load: tuple[float, float] | None = None
    """1-minute load average when the case started and when it ended."""

    @property
    def missed(self) -> list[str]:
        """One line per goal this case did not meet (or could not measure)."""
        lines = [f"{self.title}: {self.error}"] if self.error else []
        lines += [
            f"{self.title}: {c.ours} / {c.reference} = {c.ratio.median:.2f}× (goal ≤ {c.goal}×)"
            for c in self.comparisons
            if c.met is False
        ]
        lines += [
            f"{self.title}: {c.what} = {c.value} (goal {c.goal})" for c in self.checks if c.met is False
        ]
        return lines
