"""Release order: each release of an IMDb file is dated by its Last-Modified, and an older one than the release the
platform holds is refused, so a stale mirror or a misconfigured cache cannot quietly take the data back in time.

A release is compared by date only when both dates are known: a server that sends no Last-Modified (or an
unreadable one) gives a release no date, and such a release is accepted as today (the sha256 still keeps the same
file from being loaded twice). Equal dates are not older: a file republished the same day is taken.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, date, datetime

# The run configuration that lets an operator take an older release on purpose (docs/operations.md).
ALLOW_OLDER_RELEASE = "allow_older_release"


class OlderReleaseRefused(Exception):
    """A file's offered release is older than the one the platform holds; nothing was changed."""


def release_date(last_modified: str | None) -> datetime | None:
    """The release's date from its Last-Modified text (an HTTP date), in UTC; None when missing or unreadable."""
    if not last_modified:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return None
    # RFC 5322's "-0000" zone parses to a naive datetime; HTTP dates are always GMT.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def release_day(last_modified: str | None) -> date:
    """The day a release is of, from its Last-Modified (today, in UTC, for a release without a date)."""
    return (release_date(last_modified) or datetime.now(UTC)).date()


def newest(*last_modified: str | None) -> str | None:
    """The newest of these Last-Modified texts that carry a date; None when none does."""
    dated = [(date, text) for text in last_modified if (date := release_date(text)) is not None]
    return max(dated)[1] if dated else None


def refuse_older(file_name: str, offered: str | None, held: str | None) -> None:
    """Raise OlderReleaseRefused when the ``offered`` release is dated before the ``held`` one."""
    offered_date, held_date = release_date(offered), release_date(held)
    if offered_date is None or held_date is None or offered_date >= held_date:
        return
    raise OlderReleaseRefused(
        f"{file_name}: the release offered is of {_show(offered_date)}, older than the release held, of "
        f"{_show(held_date)}; refusing to go back, nothing was changed. To roll back deliberately, run the refresh "
        f"with the config `{ALLOW_OLDER_RELEASE}: true` (docs/operations.md)."
    )


def _show(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
