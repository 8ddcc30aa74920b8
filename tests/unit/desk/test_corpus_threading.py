"""The benchmark's whole corpus threads into exactly one ticket per conversation, in any order.

The 2,000 mails of ``bench/corpus.py`` (replies with and without References,
attachments up to a few MB) go through spool and process() in two arrival
orders; every conversation must end with all its mail on one ticket, and no
ticket may hold two conversations. A smaller corpus runs in more orders.
"""

from __future__ import annotations

import random
from functools import lru_cache

import pytest
from sqlalchemy import select

from bench.corpus import CorpusMail, generate
from maildesk import spool
from maildesk.mail.parse import parse
from maildesk.models import Message
from maildesk.process import process_many
from tests.helpers import Desk


@lru_cache(maxsize=2)
def corpus(size: int) -> tuple[CorpusMail, ...]:
    return tuple(generate(size, seed=11))


def thread_in_order(desk: Desk, mails: list[CorpusMail], *, parse_ahead: bool = True) -> None:
    """Spool and process ``mails`` in batches of 50 as `ingest --maildir` does: parsed ahead, so
    a batch looks up its thread keys at once (``parse_ahead=False``: as the daemon, one by one)."""
    for start in range(0, len(mails), 50):
        batch = mails[start:start + 50]
        spooled = spool.put_many(desk.db, [spool.Item(m.raw, "test", notify=False) for m in batch])
        parsed = {row.id: parse(m.raw) for row, m in zip(spooled, batch, strict=True)} if parse_ahead else None
        outcomes = process_many(desk.db, desk.config, [row.id for row in spooled], parsed=parsed)
        assert all(o.state == "done" for o in outcomes), [o.detail for o in outcomes if o.state != "done"]

    tickets_of: dict[int, set[int]] = {}
    conversations_of: dict[int, set[int]] = {}
    with desk.db.session() as session:
        ticket_by_id = dict(session.execute(select(Message.message_id, Message.ticket_id)).all())
    for mail in mails:
        ticket = ticket_by_id[mail.message_id]
        tickets_of.setdefault(mail.conversation, set()).add(ticket)
        conversations_of.setdefault(ticket, set()).add(mail.conversation)
    assert [c for c, tickets in tickets_of.items() if len(tickets) > 1] == []
    assert [t for t, convs in conversations_of.items() if len(convs) > 1] == []


@pytest.mark.parametrize("order", ["as generated", "reversed"])
def test_the_whole_benchmark_corpus_is_one_ticket_per_conversation(desk: Desk, order: str) -> None:
    mails = list(corpus(2000))
    if order == "reversed":
        mails.reverse()
    thread_in_order(desk, mails)


@pytest.mark.parametrize("parse_ahead", [True, False], ids=["parsed ahead", "one by one"])
@pytest.mark.parametrize("shuffle_seed", [1, 2, 3, 4])
def test_a_smaller_corpus_in_more_orders(desk: Desk, shuffle_seed: int, parse_ahead: bool) -> None:
    mails = list(corpus(300))
    random.Random(shuffle_seed).shuffle(mails)
    thread_in_order(desk, mails, parse_ahead=parse_ahead)
