"""How results look in a notebook: HTML tables, and a plan's channel timeline.

Jupyter calls ``_repr_html_``; ``RegistrationPlan.plot()`` draws with matplotlib (an
optional dependency: ``pip install matplotlib``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ._errors import require

if TYPE_CHECKING:
    from ._bulk._summary import BulkSummary
    from ._models import Availability
    from ._planner import RegistrationPlan

__all__ = ["availability_html", "plan_html", "plot_plan", "summary_html"]

_STYLE = "border-collapse:collapse;font-family:sans-serif;font-size:13px"


def _table(caption: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding:2px 8px'>{escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return (
        f"<table style='{_STYLE}'><caption style='text-align:left;font-weight:bold'>"
        f"{escape(caption)}</caption><tr>{head}</tr>{body}</table>"
    )


def plan_html(plan: RegistrationPlan) -> str:
    rows = []
    for window in plan.windows:
        if window.eligible:
            wait = plan.ready_in(window.channel)
            state = "open now" if wait == 0 else f"opens in {wait:.0f} s"
        else:
            state = f"not used: {window.why_not}"
        rows.append((window.channel.value, window.ready_at.isoformat(timespec="seconds"), state))
    next_channel = plan.next_channel()
    caption = f"{plan.number} · {plan.outcome.value}" + (
        f" · next: {next_channel.value}" if next_channel else ""
    )
    if plan.appeal_token:
        caption += f" · appeal token {plan.appeal_token}"
    if plan.reason:
        caption += f" · {plan.reason}"
    return _table(caption, ("channel", "opens at (UTC)", ""), rows)


def availability_html(availability: Availability) -> str:
    fields = (
        "available",
        "blocked",
        "appeal_token",
        "sms_wait_seconds",
        "voice_wait_seconds",
        "wa_old_wait_seconds",
        "wa_old_eligible",
        "reason",
    )
    rows = [(name, getattr(availability, name)) for name in fields]
    rows.append(("observed_at", availability.observed_at.isoformat(timespec="seconds")))
    return _table(f"Availability of {availability.number}", ("field", "value"), rows)


def summary_html(summary: BulkSummary) -> str:
    rows: list[tuple[str, object]] = [
        (str(outcome), count) for outcome, count in sorted(summary.outcomes.items())
    ]
    rows += [(f"error: {name}", count) for name, count in sorted(summary.errors.items())]
    caption = (
        f"{summary.total} numbers in {summary.wall_time:.1f} s ({summary.rate:.0f}/s), "
        f"{summary.attempts} requests"
    )
    return _table(caption, ("outcome", "count"), rows)


def plot_plan(plan: RegistrationPlan, ax: Any = None) -> Any:
    """A timeline of the plan's channels: a bar from the answer to the moment each opens."""
    plt = require("matplotlib.pyplot", feature="plot()", extra="notebook")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 1.8))
    channels = list(plan.windows)
    labels = [w.channel.value for w in channels]
    for row, window in enumerate(channels):
        delay = (window.ready_at - plan.observed_at).total_seconds()
        color = "tab:green" if window.eligible else "lightgray"
        ax.barh(row, max(delay, 0.5), left=0, color=color, alpha=0.35 if window.eligible else 0.6)
        if window.eligible:
            ax.plot([delay], [row], marker="|", markersize=18, color="tab:green")
            label = "open now" if delay <= 0 else f"opens at +{delay:g} s"
        else:
            label = f"not used: {window.why_not}"
        ax.annotate(
            label, (max(delay, 0.0), row), xytext=(6, 0), textcoords="offset points", va="center"
        )
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("seconds after the answer")
    ax.set_xlim(0, max(10.0, *(ax.get_xlim()[1:])) * 1.35)
    ax.set_title(f"{plan.number}: {plan.outcome.value}", fontsize=10)
    ax.invert_yaxis()
    return ax
