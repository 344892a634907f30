"""What a bulk run did: `BulkSummary`, counts and spreads kept in bounded memory."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import attrs

from plugz_async._models import Channel
from plugz_async._planner import PlanOutcome, RegistrationPlanner
from plugz_async._stored import epoch_to_iso

from ._items import BulkItem

__all__ = ["BulkSummary"]

# Channel-opening times the summary keeps for its medians (a reservoir sample beyond it).
SPREAD_SAMPLE = 10_000


@attrs.define
class _Spread:
    """Earliest, median and latest of a stream of moments (epoch seconds), in bounded
    memory: the median comes from a reservoir sample once past ``SPREAD_SAMPLE``.

    The reservoir skips ahead (Li's algorithm L): past the sample's size, it draws random
    numbers only for the moments it keeps, not for every moment seen.
    """

    earliest: float | None = None
    latest: float | None = None
    seen: int = 0
    sample: list[float] = attrs.field(factory=list)
    rng: random.Random = attrs.field(factory=lambda: random.Random(0), repr=False)
    _weight: float = attrs.field(default=1.0, repr=False)
    _next: int = attrs.field(default=0, repr=False)

    def add(self, moment: float) -> None:
        self.seen += 1
        if self.earliest is None or moment < self.earliest:
            self.earliest = moment
        if self.latest is None or moment > self.latest:
            self.latest = moment
        sample = self.sample
        if len(sample) < SPREAD_SAMPLE:
            sample.append(moment)
            if len(sample) == SPREAD_SAMPLE:
                self._skip()
        elif self.seen == self._next:
            sample[self.rng.randrange(SPREAD_SAMPLE)] = moment
            self._skip()

    def _skip(self) -> None:
        """Draw the next moment to keep (each seen so far had the same chance)."""
        rng = self.rng
        self._weight *= math.exp(math.log(rng.random() or 1e-300) / SPREAD_SAMPLE)
        gap = math.floor(math.log(rng.random() or 1e-300) / math.log1p(-self._weight))
        self._next = self.seen + gap + 1

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def _moments(self) -> tuple[float, float, float] | None:
        """The earliest, median and latest moments (epoch seconds); None when none seen."""
        if self.earliest is None or self.latest is None:
            return None
        return self.earliest, sorted(self.sample)[len(self.sample) // 2], self.latest

    def describe(self) -> str:
        """How many, and when: earliest, median and latest, in UTC to the second."""
        moments = self._moments()
        if moments is None:
            return "none"
        earliest, median, latest = (
            datetime.fromtimestamp(m, timezone.utc).isoformat(timespec="seconds") for m in moments
        )
        return f"{self.seen} from {earliest}, median {median}, latest {latest}"

    def to_dict(self) -> dict[str, Any] | None:
        moments = self._moments()
        if moments is None:
            return None
        earliest, median, latest = (epoch_to_iso(m) for m in moments)
        return {"count": self.seen, "earliest": earliest, "median": median, "latest": latest}


@attrs.define
class BulkSummary:
    """What a run did: counts by outcome and error class, attempts, time, rate, and
    when each channel opens (earliest, median, latest) across the numbers."""

    total: int = 0
    outcomes: Counter[PlanOutcome] = attrs.field(factory=Counter)
    """Rows by `PlanOutcome` (``PlanOutcome.ERROR`` for a failed check, see ``errors``;
    ``PlanOutcome.SAME_LINE`` for a row whose line an earlier row holds, not sent)."""
    errors: Counter[str] = attrs.field(factory=Counter)
    attempts: int = 0
    started: float = 0.0
    wall_time: float = 0.0
    opens: dict[Channel, _Spread] = attrs.field(factory=lambda: {c: _Spread() for c in Channel})
    pending: int = 0
    """Rows that ended in an error that may pass (see `BulkItem.final`): to do again."""
    stopped: str | None = None
    """The class of the error that stopped the run early, if one did."""
    old_forms: int = 0
    """Rows whose number is a Brazilian mobile in its old 8-digit form
    (`PhoneNumber.is_old_form`): the same line as the form with the ninth digit."""

    def __repr__(self) -> str:
        """The counts, the wall time and rate, the outcomes and errors, and when each
        channel opens across the numbers (how many, earliest, median, latest, in UTC)."""
        order = {outcome.value: i for i, outcome in enumerate(PlanOutcome)}
        outcomes = {
            str(outcome): count
            for outcome, count in sorted(
                self.outcomes.items(), key=lambda pair: (order.get(str(pair[0]), 99), pair[0])
            )
        }
        errors = dict(sorted(self.errors.items(), key=lambda pair: (-pair[1], pair[0])))
        parts = [
            f"total={self.total}",
            f"wall_time={self.wall_time:.2f}s",
            f"rate={self.rate:.1f}/s",
            f"outcomes={outcomes}",
            f"errors={errors}",
            f"attempts={self.attempts}",
            f"retries={self.retries}",
            f"pending={self.pending}",
        ]
        if self.old_forms:
            parts.append(f"old_forms={self.old_forms}")
        if self.stopped is not None:
            parts.append(f"stopped={self.stopped!r}")
        opens = {channel.value: spread.describe() for channel, spread in self.opens.items()}
        parts.append(f"opens={opens}")
        return f"<BulkSummary {', '.join(parts)}>"  # a description: not code to evaluate

    def _repr_html_(self) -> str:
        from plugz_async._display import summary_html

        return summary_html(self)

    @property
    def retries(self) -> int:
        """Requests beyond the first of each row (rows not sent left out: an impossible
        number, a line checked in an earlier row)."""
        unsent = self.errors.get("InvalidPhoneNumber", 0) + self.outcomes[PlanOutcome.SAME_LINE]
        return max(0, self.attempts - (self.total - unsent))

    @property
    def rate(self) -> float:
        """Rows finished per second of wall time."""
        return self.total / self.wall_time if self.wall_time > 0 else 0.0

    def add(self, item: BulkItem, now: float, planner: RegistrationPlanner) -> None:
        self.total += 1
        self.attempts += item.attempts
        self.wall_time = now - self.started
        number = item.number
        if number is not None and number.is_old_form:
            self.old_forms += 1
        if item.same_line_as is not None:
            self.outcomes[PlanOutcome.SAME_LINE] += 1
            return
        availability = item.availability
        if availability is None:
            self.outcomes[PlanOutcome.ERROR] += 1
            self.errors[type(item.error).__name__] += 1
            if not item.final:
                self.pending += 1
            return
        # The planner's verdict without building a plan: items plan lazily.
        assessment = planner.assess(availability)
        self.outcomes[assessment.outcome] += 1  # a StrEnum: it counts as its text
        received = None
        for channel, _, delay, why_not in assessment.channels:
            if why_not is None:
                if received is None:
                    received = availability.observed_at.timestamp()
                self.opens[channel].add(received + delay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "outcomes": {str(outcome): count for outcome, count in self.outcomes.items()},
            "errors": dict(self.errors),
            "attempts": self.attempts,
            "retries": self.retries,
            "wall_time": round(self.wall_time, 3),
            "rate": round(self.rate, 1),
            "pending": self.pending,
            "stopped": self.stopped,
            "old_forms": self.old_forms,
            "opens": {channel.value: spread.to_dict() for channel, spread in self.opens.items()},
        }
