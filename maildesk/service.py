"""``maildesk serve``: the daemon's asyncio loop and its background stages.

Runs the processor (drains the inbound spool) and, as they are enabled, the
listeners; stops cleanly on SIGTERM/SIGINT. Database work runs in a worker
thread so the loop (and any SMTP dialogue on it) never waits on it.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from maildesk import send, spool
from maildesk.config import Config
from maildesk.db import Database
from maildesk.errors import TemporaryFailure
from maildesk.process import Outcome, prepare, process
from maildesk.receive.imap import ImapPollers
from maildesk.receive.smtp import start_server
from maildesk.turns import Turns

log = structlog.get_logger(__name__)

IDLE_POLL_SECONDS = 1.0
RETRY_AFTER_TEMPORARY_FAILURE = 5.0


class Processor:
    """Drains the spool whenever woken (a listener accepted mail) or every second.

    One message per turn, yielding to the SMTP listener (see maildesk.turns).
    """

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.wake = asyncio.Event()
        self.turns = Turns(serialize=db.is_sqlite)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.wake.clear()  # before draining: mail accepted meanwhile wakes the next round
            try:
                outcomes = await self._drain(stopping)
            except TemporaryFailure as exc:
                log.warning("processor waiting for the database", error=str(exc))
                outcomes, delay = [], RETRY_AFTER_TEMPORARY_FAILURE
            else:
                progress = any(o.state != "busy" for o in outcomes)  # busy: another daemon has it
                delay = 0 if progress else IDLE_POLL_SECONDS
            if delay:
                waiters = [asyncio.create_task(self.wake.wait()), asyncio.create_task(stopping.wait())]
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()

    async def _drain(self, stopping: asyncio.Event) -> list[Outcome]:
        outcomes = []
        for inbound_id in await asyncio.to_thread(spool.queued_ids, self.db, 200):
            if stopping.is_set():
                break
            # Parse before taking the turn: a slow parse must not hold up the listener's commits.
            parsed = await asyncio.to_thread(prepare, self.db, inbound_id)
            async with self.turns.background():
                outcomes.append(await asyncio.to_thread(process, self.db, self.config, inbound_id, parsed=parsed))
        return outcomes


class Sender:
    """Drains the outbox: sends what is due every second; retries wait for their backoff.

    With ``turns``, each round waits until the SMTP listener is quiet (see maildesk.turns).
    """

    def __init__(self, config: Config, db: Database, turns: Turns | None = None) -> None:
        self.config = config
        self.db = db
        self.turns = turns

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if self.turns is not None:
                await self.turns.quiet()
            try:
                results = await asyncio.to_thread(send.flush, self.db, self.config, limit=100)
            except TemporaryFailure as exc:
                log.warning("sender waiting for the database", error=str(exc))
                results, delay = [], RETRY_AFTER_TEMPORARY_FAILURE
            else:
                delay = 0 if results else IDLE_POLL_SECONDS
            if delay:
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                except TimeoutError:
                    pass


async def serve(config: Config, db: Database) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    processor = Processor(config, db)
    sender = asyncio.create_task(Sender(config, db, processor.turns).run(stopping), name="sender")
    listener = None
    if config.smtp.enabled:
        listener = await start_server(config, db, on_accepted=lambda _inbound_id: processor.wake.set(),
                                      turns=processor.turns)
    # IMAP pollers block on the network: each runs in its own thread and wakes the processor.
    pollers = ImapPollers(config, db, on_spooled=lambda: loop.call_soon_threadsafe(processor.wake.set))
    pollers.start()
    log.info("maildesk running", database=db.url.render_as_string(hide_password=True),
             processor=config.processor.enabled)
    try:
        if config.processor.enabled:
            await processor.run(stopping)
        else:
            await stopping.wait()
    finally:
        await asyncio.to_thread(pollers.stop)
        if listener is not None:
            await listener.stop()
    stopping.set()
    await sender
    log.info("maildesk stopped")


def run_service(config: Config, db: Database) -> None:
    asyncio.run(serve(config, db))
