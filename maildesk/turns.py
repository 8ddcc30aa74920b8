"""Turns at the database inside one ``maildesk serve``: the listener goes first.

SQLite lets one writer in at a time and makes the others sleep and poll (the
busy timeout), which costs a waiting SMTP session far more than the commit
itself. So on SQLite the listener's spool commits (one per group commit, see
receive/spool_writer.py) and the processor's messages take turns through one
asyncio lock, handed over in order.

Background work (processing, sending) also competes with the SMTP dialogue
for the interpreter and the disk, so it starts only when no listener commit
is waiting and none happened in the last ``QUIET`` seconds. It never defers
longer than ``MAX_DEFER`` seconds in a row; after that it gets ``SLICE``
seconds without deferring, so a flood of mail slows background work but
never stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

QUIET = 0.02
MAX_DEFER = 2.0
SLICE = 0.5


class Turns:
    def __init__(self, *, serialize: bool) -> None:
        """``serialize``: one writer at a time (SQLite); PostgreSQL needs no lock."""
        self._lock = asyncio.Lock() if serialize else None
        self._waiting = 0
        self._last_urgent = float("-inf")
        self._owed_until = float("-inf")

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """A listener's commit: next in line, ahead of background work."""
        self._waiting += 1
        try:
            async with self._locked():
                yield
        finally:
            self._waiting -= 1
            self._last_urgent = asyncio.get_running_loop().time()

    @asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        """The processor's turn for one message, once the listener is quiet (or waited long enough)."""
        await self.quiet()
        async with self._locked():
            yield

    async def quiet(self) -> None:
        """Return when the listener is quiet, or background work has deferred long enough."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_DEFER
        while loop.time() >= self._owed_until and self._listener_busy(loop.time()):
            if loop.time() >= deadline:
                self._owed_until = loop.time() + SLICE
                return
            await asyncio.sleep(QUIET)

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
        else:
            async with self._lock:
                yield

    def _listener_busy(self, now: float) -> bool:
        return self._waiting > 0 or now - self._last_urgent < QUIET
