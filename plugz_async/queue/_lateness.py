"""How late the queue's steps start, by kind of step: what says whether the queue is on
time.

A step's moment is when it became due (``Record.due``: the channel's window opening for
a code request, the next poll of a transfer), or when its input came (a code, a captcha
text, a PIN given before its wait ran out). A worker notes, for every step it runs, how
long after that moment it started, in buckets a quarter of an octave wide (each 19%
wider than the one before, from a millisecond up): a percentile read off them is within
19% of the true one, the maximum is exact, and the whole fits in a few hundred bytes
whatever the number of steps. Every worker says its counts with its heartbeat (in
``queue workers``, the dashboard and the benchmark), and the counts of many workers add
up (`Lateness.merge`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Lateness", "LatenessSummary"]

#: Buckets per doubling of the lateness.
PER_OCTAVE = 4

#: The upper edge of the first bucket (seconds): a step that started within a
#: millisecond of its moment is on time.
FIRST = 0.001

#: Buckets in all: the last holds everything from about 7.5 hours late on.
BUCKETS = 100


def bucket_of(late: float) -> int:
    """The bucket of a lateness of ``late`` seconds (0 holds the early and the on time)."""
    if late <= FIRST:
        return 0
    return min(int(math.log2(late / FIRST) * PER_OCTAVE) + 1, BUCKETS - 1)


def upper_edge(bucket: int) -> float:
    """The largest lateness (seconds) bucket ``bucket`` holds."""
    return float(FIRST * 2 ** (bucket / PER_OCTAVE))


@attrs.frozen
class LatenessSummary:
    """How late the steps of one kind started (seconds)."""

    count: int
    p50: float
    p99: float
    max: float
    early: int = 0

    def to_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


@attrs.define
class _Kind:
    counts: list[int] = attrs.field(factory=lambda: [0] * BUCKETS)
    count: int = 0
    max: float = 0.0
    early: int = 0


class Lateness:
    """Counts of how late steps started, by kind of step (see the module's docstring)."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}

    def __repr__(self) -> str:
        return f"Lateness({sorted(self._kinds)})"

    def note(self, kind: str, late: float) -> None:
        """A step of ``kind`` started ``late`` seconds after its moment (below zero:
        before it, which the queue's steps never do; counted apart)."""
        counts = self._kinds.get(kind)
        if counts is None:
            counts = self._kinds[kind] = _Kind()
        counts.counts[bucket_of(late)] += 1
        counts.count += 1
        counts.max = max(counts.max, late)
        if late < 0:
            counts.early += 1

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def summary(self, kind: str) -> LatenessSummary:
        """The count, median, 99th percentile and maximum of ``kind``'s lateness."""
        counts = self._kinds.get(kind) or _Kind()
        return LatenessSummary(
            count=counts.count,
            p50=self._percentile(counts, 0.50),
            p99=self._percentile(counts, 0.99),
            max=counts.max,
            early=counts.early,
        )

    def summaries(self) -> dict[str, LatenessSummary]:
        return {kind: self.summary(kind) for kind in self.kinds()}

    @staticmethod
    def _percentile(counts: _Kind, share: float) -> float:
        if not counts.count:
            return 0.0
        rank = max(1, math.ceil(share * counts.count))
        seen = 0
        for bucket, count in enumerate(counts.counts):
            seen += count
            if seen >= rank:
                if not bucket:
                    return 0.0
                last = bucket == BUCKETS - 1  # it holds all that is later: up to the max
                return counts.max if last else min(upper_edge(bucket), counts.max)
        return counts.max  # pragma: no cover - the counts add up to count

    # -- said by one worker, read and added up by another process -------------------------

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON can hold them (the buckets that are not empty)."""
        return {
            kind: {
                "buckets": {str(i): n for i, n in enumerate(counts.counts) if n},
                "count": counts.count,
                "max": round(counts.max, 6),
                "early": counts.early,
            }
            for kind, counts in self._kinds.items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lateness:
        """What `to_dict` wrote (entries it cannot read are left out)."""
        lateness = cls()
        lateness.merge_dict(data)
        return lateness

    def merge_dict(self, data: Mapping[str, Any]) -> None:
        """Add the counts `to_dict` wrote (another worker's) to these."""
        for kind, said in data.items():
            try:
                buckets = {int(i): int(n) for i, n in said["buckets"].items()}
                count, most, early = int(said["count"]), float(said["max"]), int(said["early"])
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            counts = self._kinds.setdefault(str(kind), _Kind())
            for bucket, n in buckets.items():
                counts.counts[min(max(bucket, 0), BUCKETS - 1)] += n
            counts.count += count
            counts.max = max(counts.max, most)
            counts.early += early

    @classmethod
    def merge(cls, many: Iterable[Mapping[str, Any]]) -> Lateness:
        """The counts of many workers (what each `to_dict` wrote), added up."""
        lateness = cls()
        for data in many:
            lateness.merge_dict(data)
        return lateness
