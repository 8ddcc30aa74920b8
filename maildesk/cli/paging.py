"""Lists that never cut silently: ``--limit N``, ``--all`` and ``--before-id ID``.

Every list command shows the newest rows first, at most ``--limit`` of them
(50 unless told), and when more exist it says so on stderr with the option
that shows the next page. Its JSON is ``{"items": [...], "next": ID}``, where
``next`` is the ``--before-id`` of the next page, or null when nothing more
exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from maildesk.models import MAX_ID

DEFAULT_LIMIT = 50

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class PageRequest:
    limit: int | None  # None: everything
    before_id: int | None


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next: int | None


def paged(command: F) -> F:
    """Add ``--limit``, ``--all`` and ``--before-id`` to a list command; it receives ``page: PageRequest``."""
    options = [
        click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
                     help="Show at most this many rows."),
        click.option("--all", "show_all", is_flag=True, help="Show every row, however many."),
        click.option("--before-id", type=click.IntRange(1, MAX_ID),
                     help="Only rows older than this id (the next page, as the previous one said)."),
    ]

    def wrapper(*args: Any, limit: int, show_all: bool, before_id: int | None, **kwargs: Any) -> Any:
        return command(*args, page=PageRequest(None if show_all else limit, before_id), **kwargs)

    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def fetch(session: Session, query: Select[Any], id_column: InstrumentedAttribute[int], page: PageRequest) -> Page:
    """Run ``query`` (rows newest first by ``id_column``) for one page; one row more tells if more exist."""
    query = query.order_by(id_column.desc())
    if page.before_id is not None:
        query = query.where(id_column < page.before_id)
    if page.limit is None:
        return Page(list(session.scalars(query)), None)
    rows = list(session.scalars(query.limit(page.limit + 1)))
    if len(rows) <= page.limit:
        return Page(rows, None)
    shown = rows[: page.limit]
    return Page(shown, int(getattr(shown[-1], id_column.key)))


def envelope(items: list[dict[str, Any]], next_id: int | None) -> dict[str, Any]:
    """The JSON of every list command."""
    return {"items": items, "next": next_id}


def say_if_cut(shown: int, next_id: int | None) -> None:
    if next_id is not None:
        click.echo(f"maildesk: {shown} shown, more exist: --before-id {next_id} for the next page, "
                   "--all for every one", err=True)
