"""Test helpers: build realistic messages, a Desk that ingests them, and a stand-in bug."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, NoReturn

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from maildesk import present, spool
from maildesk.config import Config
from maildesk.db import Database
from maildesk.models import Message, Ticket
from maildesk.process import Outcome, process

_counter = itertools.count(1)
BASE_DATE = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def config_toml(config_data: dict) -> str:
    """The config dict of tests/conftest.py as a TOML file's text (sections and arrays of tables)."""
    lines = []
    for section, values in config_data.items():
        if isinstance(values, list):
            for item in values:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def raising(message: str) -> Callable[..., NoReturn]:
    """A stand-in for any function that fails with a bug (RuntimeError), for monkeypatching."""

    def broken(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(message)

    return broken


def make_mail(
    *,
    sender: str = "Alice Customer <alice@customer.example>",
    to: str = "support@example.com",
    subject: str = "Printer on fire",
    body: str = "Hello,\n\nmy printer is on fire. Please help.\n\nAlice\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> bytes:
    """A plain-text mail as a mail client would send it."""
    n = next(_counter)
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    if cc:
        mail["Cc"] = cc
    mail["Subject"] = subject
    mail["Date"] = format_datetime(date or BASE_DATE + timedelta(minutes=n))
    mail["Message-ID"] = message_id or f"<test-{n}@customer.example>"
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = references
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    return bytes(mail)


class Desk:
    """Spool and process mail the way the daemon does, and read the results."""

    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.config = config

    def ingest(self, raw: bytes, *, now: datetime | None = None, notify: bool = False, **envelope: Any) -> Outcome:
        """Spool and process one mail; like ``ingest --no-notify`` unless ``notify=True``
        (tests about acknowledgements ask for them; the rest are not about outbound mail)."""
        spooled = spool.put(self.db, raw, source="test", envelope=envelope, notify=notify)
        clock = (lambda: now) if now else None
        return process(self.db, self.config, spooled.id, **({"clock": clock} if clock else {}))

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        with self.db.session() as session:
            ticket = session.scalar(
                select(Ticket).where(Ticket.id == ticket_id).options(
                    selectinload(Ticket.messages).selectinload(Message.attachments),
                    selectinload(Ticket.participants),
                    selectinload(Ticket.events),
                )
            )
            assert ticket is not None, f"no ticket #{ticket_id}"
            return present.ticket_detail(ticket)

    def ticket_count(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(Ticket)) or 0

    def message_count(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(Message)) or 0
