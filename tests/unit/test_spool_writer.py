"""Group commit: a lone message is committed at once; messages arriving while a
commit runs share the next one; when a shared commit fails, every message in it
fails (its session answers 451) and nothing of it is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from maildesk import spool
from maildesk.db import Database
from maildesk.receive.spool_writer import SpoolWriter
from tests.helpers import make_mail


class HeldCommits:
    """A turn around each commit that counts commits and can hold the first one."""

    def __init__(self, hold_first: bool) -> None:
        self.commits = 0
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold_first:
            self.release.set()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        self.commits += 1
        if self.commits == 1:
            self.first_started.set()
            await self.release.wait()
        yield


def test_a_lone_message_is_committed_at_once(db: Database) -> None:
    async def scenario() -> tuple[spool.Spooled, int]:
        turns = HeldCommits(hold_first=False)
        spooled = await SpoolWriter(db, turns.turn).put(make_mail(), "smtp", {"rcpt_to": ["support@example.com"]})
        return spooled, turns.commits

    spooled, commits = asyncio.run(scenario())
    assert commits == 1 and not spooled.duplicate
    assert [row.id for row in spool.list_inbound(db)] == [spooled.id]


def test_messages_arriving_during_a_commit_share_the_next_one(db: Database) -> None:
    async def scenario() -> tuple[list[spool.Spooled], int]:
        turns = HeldCommits(hold_first=True)
        writer = SpoolWriter(db, turns.turn)
        first = asyncio.create_task(writer.put(make_mail(subject="first"), "smtp"))
        await turns.first_started.wait()
        later = [asyncio.create_task(writer.put(make_mail(subject=f"later {n}"), "smtp")) for n in range(3)]
        await asyncio.sleep(0)  # the later ones are waiting now
        turns.release.set()
        return await asyncio.gather(first, *later), turns.commits

    results, commits = asyncio.run(scenario())
    assert commits == 2
    assert len({r.id for r in results}) == 4 and spool.counts(db) == {spool.QUEUED: 4}


def test_when_a_shared_commit_fails_every_message_in_it_fails_and_none_is_stored(db: Database) -> None:
    async def scenario() -> list[spool.Spooled | BaseException]:
        turns = HeldCommits(hold_first=True)
        writer = SpoolWriter(db, turns.turn)
        first = asyncio.create_task(writer.put(make_mail(subject="first"), "smtp"))
        await turns.first_started.wait()
        unstorable = asyncio.create_task(writer.put(make_mail(subject="bad"), "smtp", {"rcpt_to": [object()]}))
        innocent = asyncio.create_task(writer.put(make_mail(subject="innocent"), "smtp"))
        await asyncio.sleep(0)
        turns.release.set()
        return await asyncio.gather(first, unstorable, innocent, return_exceptions=True)

    first, unstorable, innocent = asyncio.run(scenario())
    assert isinstance(first, spool.Spooled)
    assert isinstance(unstorable, Exception) and innocent is unstorable  # the same failure for both
    assert spool.counts(db) == {spool.QUEUED: 1}


def test_the_writer_keeps_working_after_a_failed_commit(db: Database) -> None:
    async def scenario() -> spool.Spooled:
        writer = SpoolWriter(db)
        with pytest.raises(Exception, match="not JSON serializable"):
            await writer.put(make_mail(subject="bad"), "smtp", {"rcpt_to": [object()]})
        return await writer.put(make_mail(subject="next"), "smtp")

    spooled = asyncio.run(scenario())
    assert [row.id for row in spool.list_inbound(db)] == [spooled.id]
