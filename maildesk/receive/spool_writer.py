"""Group commit: messages accepted at the same time share one spool commit.

With ``synchronous=FULL`` every SQLite commit waits for an fsync, so one
commit per message would cap the listener at the disk's fsync rate. The
``SpoolWriter`` commits whatever is waiting in one ``spool.put_many``
transaction: the first message starts a commit at once (a lone message does
not wait for company), and messages that arrive while a commit runs go
together in the next one. Each waiting session then gets its own result,
or, if the transaction failed, the same exception, so each answers 451.

One writer per listener, used from its asyncio loop only. A batch is
bounded by the number of open sessions (``smtp.max_connections``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from maildesk import spool
from maildesk.db import Database

Turn = Callable[[], AbstractAsyncContextManager[Any]]
_Waiting = tuple[spool.Item, "asyncio.Future[spool.Spooled]"]


class SpoolWriter:
    def __init__(self, db: Database, turn: Turn | None = None) -> None:
        """``turn``: entered around each commit (the daemon's turns at SQLite, see maildesk.turns)."""
        self.db = db
        self._turn: Turn = turn or nullcontext
        self._waiting: list[_Waiting] = []
        self._committer: asyncio.Task[None] | None = None

    async def put(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> spool.Spooled:
        """Return once ``raw`` is committed to the spool; raise what its commit raised."""
        future: asyncio.Future[spool.Spooled] = asyncio.get_running_loop().create_future()
        self._waiting.append((spool.Item(raw, source, envelope), future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_all(), name="spool-writer")
        # Cancelling this session (its peer went away) cancels only its own future, not the commit.
        return await future

    async def _commit_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        finally:
            self._committer = None
            if self._waiting:  # only when this task itself was cancelled (the loop shutting down)
                for _, future in self._waiting:
                    future.cancel()
                self._waiting = []

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            async with self._turn():
                results = await asyncio.to_thread(spool.put_many, self.db, [item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every session of the batch answers for it (451)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # else its session is gone; the row stays, and a retry is a duplicate
                future.set_result(result)
