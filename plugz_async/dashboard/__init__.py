"""The operator's page of a durable queue: ``plugz-async dashboard``, or `dashboard_app` in
an aiohttp application of one's own.

It shows, live, what ``plugz-async queue status`` says (counts by status, in the same
words), the registrations overdue, each worker's last heartbeat and how late its steps
start, the channel windows of the next hour as a timeline, and any one registration's
events. Everything is read a page at a time on the server, so a queue of 100,000
registrations costs a page the same as a queue of ten. It is read-only unless it is
given a token; cancelling a registration from the page needs that token (sent in a
header, never in a URL). No instance token, Client-Token or Redis password is on the
page or in its addresses. Needs the ``queue`` extra.
"""

from plugz_async._errors import require

for _module in ("saq", "redis", "limits"):
    require(_module, feature="plugz_async.dashboard", extra="queue")

from ._app import DEFAULT_PORT, LOOPBACK_NAMES, dashboard_app  # noqa: E402

__all__ = ["DEFAULT_PORT", "LOOPBACK_NAMES", "dashboard_app"]
