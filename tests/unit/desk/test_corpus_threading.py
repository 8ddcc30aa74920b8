"""The benchmark corpus threads into exactly one ticket per conversation, in any order."""

from __future__ import annotations

import random
from functools import lru_cache

import pytest

from bench.corpus import generate
from maildesk import spool
from maildesk.process import process_queued
from tests.helpers import Desk


@lru_cache(maxsize=1)
def corpus_of_120() -> tuple:
    return tuple(generate(120, seed=11))


@pytest.mark.parametrize("shuffle_seed", [1, 2])
def test_every_conversation_is_one_ticket_whatever_the_arrival_order(desk: Desk, shuffle_seed: int) -> None:
    corpus = list(corpus_of_120())
    random.Random(shuffle_seed).shuffle(corpus)
    for mail in corpus:
        spool.put(desk.db, mail.raw, source="test", notify=False)
    outcomes = process_queued(desk.db, desk.config)

    assert all(o.state == "done" for o in outcomes)
    tickets_of: dict[int, set[int]] = {}
    for mail, outcome in zip(corpus, outcomes, strict=True):
        tickets_of.setdefault(mail.conversation, set()).add(outcome.ticket_id)
    assert all(len(ids) == 1 for ids in tickets_of.values())
    assert desk.ticket_count() == len(tickets_of)
    assert desk.message_count() == len(corpus)
