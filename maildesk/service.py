"""``maildesk serve``: the daemon's asyncio loop and its background stages.

Runs the processor (drains the inbound spool), the sender (drains the
outbox), the listener and the IMAP pollers, and looks after them as a
service: READY/STATUS/WATCHDOG/STOPPING for systemd (maildesk.systemd),
SIGHUP reloads the settings (maildesk.settings), SIGTERM/SIGINT stop it
cleanly within ``service.stop_timeout_seconds``, and ``[http]`` serves
``/healthz`` and ``/metrics``. Database work runs in worker threads so the
loop (and any SMTP dialogue on it) never waits on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from maildesk import health, send, spool, web
from maildesk.config import Config
from maildesk.db import Database
from maildesk.errors import ConfigError, TemporaryFailure
from maildesk.logs import setup_logging
from maildesk.metrics import CONTENT_TYPE, Metrics
from maildesk.process import Outcome, prepare, process
from maildesk.processed import Observed, observe, outbox_high_water
from maildesk.receive.imap import ImapPollers
from maildesk.receive.smtp import Listener, start_server
from maildesk.settings import Settings
from maildesk.settings import reload as reload_settings
from maildesk.systemd import Notifier, watchdog_interval
from maildesk.turns import Turns

log = structlog.get_logger(__name__)

IDLE_POLL_SECONDS = 1.0
RETRY_AFTER_TEMPORARY_FAILURE = 5.0
STATUS_INTERVAL_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 3.0
RELEASE_SECONDS = 1.0

ConfigSource = Config | Callable[[], Config]


def _current(source: ConfigSource) -> Callable[[], Config]:
    return source if callable(source) else (lambda: source)


class Processor:
    """Drains the spool whenever woken (a listener accepted mail) or every second.

    One message per turn, yielding to the SMTP listener (see maildesk.turns).
    ``config`` is a Config, or a callable giving the one in force (it changes on reload).
    """

    def __init__(self, config: ConfigSource, db: Database, metrics: Metrics | None = None) -> None:
        self.config = _current(config)
        self.db = db
        self.metrics = metrics
        self.wake = asyncio.Event()
        self.turns = Turns(serialize=db.is_sqlite)
        self.observed = Observed()

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
                began = time.perf_counter()
                outcome = await asyncio.to_thread(process, self.db, self.config(), inbound_id, parsed=parsed)
                if self.metrics is not None and outcome.state in (spool.DONE, spool.FAILED):
                    self.metrics.processing_seconds.observe(time.perf_counter() - began)
            outcomes.append(outcome)
        if self.metrics is not None and outcomes:
            await self._count(outcomes)
        return outcomes

    async def _count(self, outcomes: list[Outcome]) -> None:
        try:
            await asyncio.to_thread(observe, self.db, outcomes, self.metrics, self.observed)
        except Exception as exc:  # noqa: BLE001 - metrics never stop processing
            log.warning("cannot count processed messages", error=str(exc))


class Sender:
    """Drains the outbox: sends what is due every second; retries wait for their backoff.

    With ``turns``, each round waits until the SMTP listener is quiet (see maildesk.turns).
    """

    def __init__(self, config: ConfigSource, db: Database, turns: Turns | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = _current(config)
        self.db = db
        self.turns = turns
        self.metrics = metrics
        self.in_hand: int | None = None
        """The outbox row being sent (set from the flush's thread)."""

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if self.turns is not None:
                await self.turns.quiet()
            try:
                results = await asyncio.to_thread(send.flush, self.db, self.config(), limit=100,
                                                  should_stop=stopping.is_set, in_hand=self._hold)
            except TemporaryFailure as exc:
                log.warning("sender waiting for the database", error=str(exc))
                results, delay = [], RETRY_AFTER_TEMPORARY_FAILURE
            else:
                delay = 0 if results else IDLE_POLL_SECONDS
            if self.metrics is not None:
                for result in results:
                    status = "deferred" if result.status == "queued" else result.status
                    self.metrics.outbox.labels(status=status, kind=result.kind).inc()
            if delay:
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=delay)
                except TimeoutError:
                    pass

    def _hold(self, outbox_id: int | None) -> None:
        self.in_hand = outbox_id


class Daemon:
    """One running ``maildesk serve``: its settings (swapped on reload) and its stages."""

    def __init__(self, settings: Settings, db: Database, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier or Notifier(None)
        self.metrics = Metrics()
        self.processor = Processor(lambda: self.settings.config, db, self.metrics)
        self.sender = Sender(lambda: self.settings.config, db, self.processor.turns, self.metrics)
        self.listener: Listener | None = None
        self.http: asyncio.Server | None = None
        self.pollers: ImapPollers | None = None
        self.stop_requested = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._health = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")
        self._looking: asyncio.Future[dict[str, Any]] | None = None
        self.last_snapshot: dict[str, Any] | None = None

    @property
    def config(self) -> Config:
        return self.settings.config

    # -- start ---------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listeners, check the database, start the stages; raise ConfigError if one cannot start."""
        loop = asyncio.get_running_loop()
        config = self.config
        self.settings.install()
        if config.smtp.enabled:
            self.listener = await start_server(
                config, self.db, on_accepted=self._accepted, turns=self.processor.turns, counters=self.metrics)
        if config.http.enabled:
            try:
                self.http = await web.start(config.http.host, config.http.port,
                                            {"/healthz": self._healthz, "/metrics": self._metrics})
            except OSError as exc:
                raise ConfigError(f"http.host/http.port: cannot listen on {config.http.host}:{config.http.port}: "
                                  f"{exc.strerror or exc}") from None
            port = self.http.sockets[0].getsockname()[1]
            log.info("http listening", host=config.http.host, port=port)
        self.processor.observed.outbox_id = await asyncio.to_thread(outbox_high_water, self.db)
        snapshot = await self.look()
        if not snapshot["database"]["reachable"]:
            raise TemporaryFailure(f"database unavailable: {snapshot['database']['error']}")
        # IMAP pollers block on the network: each runs in its own thread and wakes the processor.
        wake = self.processor.wake
        self.pollers = ImapPollers(config, self.db, on_spooled=lambda: loop.call_soon_threadsafe(wake.set),
                                   on_batch=self._fetched)
        self.pollers.start()
        write_pid_file(config.service.pid_path())

    def _accepted(self, _inbound_id: int) -> None:
        self.processor.wake.set()

    def _fetched(self, mailbox: str, new: int, duplicates: int) -> None:
        self.metrics.message_received(f"imap:{mailbox}", duplicate=False, count=new)
        self.metrics.message_received(f"imap:{mailbox}", duplicate=True, count=duplicates)

    # -- looking after it ------------------------------------------------------

    async def look(self) -> dict[str, Any]:
        """A fresh ``health.snapshot`` (in a thread of its own, given HEALTH_TIMEOUT_SECONDS); sets the gauges."""
        future = self._looking
        if future is None or future.done():  # else share the look in progress (it may be stuck in the database)
            future = self._looking = asyncio.get_running_loop().run_in_executor(
                self._health, health.snapshot, self.db, self.config)
        try:
            snapshot = await asyncio.wait_for(asyncio.shield(future), HEALTH_TIMEOUT_SECONDS)
        except TimeoutError:
            return _unreachable(f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s")
        self.last_snapshot = snapshot
        self._set_gauges(snapshot)
        return snapshot

    def _set_gauges(self, snapshot: dict[str, Any]) -> None:
        if not snapshot["database"]["reachable"]:
            return
        m, spooled, outbox = self.metrics, snapshot["spool"], snapshot["outbox"]
        m.spool_queued.set(spooled["queued"])
        m.spool_failed.set(spooled["failed"])
        m.spool_oldest_seconds.set(spooled["oldest_queued_age_seconds"] or 0)
        m.outbox_queued.set(outbox["queued"])
        m.outbox_failed.set(outbox["failed"])
        m.outbox_oldest_seconds.set(outbox["oldest_queued_age_seconds"] or 0)
        for box in snapshot["mailboxes"]:
            if box["seconds_since_poll"] is not None:
                m.imap_poll_lag.labels(mailbox=box["name"]).set(box["seconds_since_poll"])

    async def _healthz(self) -> web.Response:
        snapshot = await self.look()
        smtp = self.config.smtp
        listener = {"enabled": smtp.enabled, "bound": self.listener is not None and self.listener.bound,
                    "address": f"{smtp.host}:{self.listener.port}" if self.listener is not None else None}
        healthy = snapshot["database"]["reachable"] and (listener["bound"] or not smtp.enabled)
        body = {"status": "ok" if healthy else "unhealthy", "listener": listener, **snapshot}
        return web.Response(200 if healthy else 503, "application/json",
                            json.dumps(body, ensure_ascii=False).encode())

    async def _metrics(self) -> web.Response:
        return web.Response(200, CONTENT_TYPE, self.metrics.text())

    async def report_status(self, stopping: asyncio.Event) -> None:
        """Every STATUS_INTERVAL_SECONDS: the STATUS= line for systemd, and the gauges."""
        while not stopping.is_set():
            snapshot = await self.look()
            self.notifier.status(health.status_line(snapshot))
            try:
                await asyncio.wait_for(stopping.wait(), STATUS_INTERVAL_SECONDS)
            except TimeoutError:
                pass

    async def watchdog(self, interval: float, stopping: asyncio.Event) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop is stuck, the pings stop and systemd restarts us."""
        while not stopping.is_set():
            self.notifier.watchdog()
            try:
                await asyncio.wait_for(stopping.wait(), interval)
            except TimeoutError:
                pass

    # -- reload ----------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read everything an admin can change again; swap it in only if it validates."""
        async with self._reloading:
            self.notifier.reloading()
            try:
                reloaded = await asyncio.to_thread(reload_settings, self.settings)
            except ConfigError as exc:
                log.error("reload failed, still running on the previous settings", error=" ".join(str(exc).split()))
            else:
                self.settings = reloaded.settings
                self.settings.install()
                if self.listener is not None:
                    self.listener.reconfigure(self.config)
                setup_logging(self.config.logging.level, self.config.logging.format)
                for change in reloaded.needs_restart:
                    log.warning("changed setting needs a restart; still running on the old value", setting=change)
                log.info("reloaded", source=str(self.settings.source or "built-in defaults"),
                         needs_restart=len(reloaded.needs_restart))
            snapshot = self.last_snapshot
            self.notifier.ready(health.status_line(snapshot) if snapshot else None)

    # -- stop ------------------------------------------------------------------

    async def stop(self, tasks: list[asyncio.Task[Any]], stopping: asyncio.Event) -> bool:
        """Stop taking work, finish what is in hand, hand the rest back; False if time ran out."""
        loop = asyncio.get_running_loop()
        # The last second is kept for handing back a mail whose sending is stuck.
        deadline = loop.time() + max(0.0, self.config.service.stop_timeout_seconds - RELEASE_SECONDS)
        self.notifier.stopping()
        log.info("stopping", timeout=self.config.service.stop_timeout_seconds)
        if self.listener is not None:
            # A client slow to finish its DATA gets half the time: the processor needs the rest.
            await self.listener.drain(max(0.0, deadline - loop.time()) / 2)
        stopping.set()
        clean = True
        pollers = asyncio.create_task(asyncio.to_thread(self.pollers.stop, max(0.1, deadline - loop.time())),
                                      name="imap pollers") if self.pollers is not None else None
        waiting = [*tasks, *([pollers] if pollers else [])]
        if waiting:
            _done, pending = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()))
            if pending:
                clean = False
                log.warning("work not finished within service.stop_timeout_seconds is left for the next start",
                            stages=sorted(t.get_name() for t in pending))
                await self._hand_back()
        if self.listener is not None:
            await self.listener.stop()
        if self.http is not None:
            self.http.close()
        remove_pid_file(self.config.service.pid_path())
        self._health.shutdown(wait=False, cancel_futures=True)
        return clean

    async def _hand_back(self) -> None:
        """The sender is stuck on a mail (a relay that does not answer): make it due again at once."""
        outbox_id = self.sender.in_hand
        if outbox_id is None:
            return
        try:
            released = await asyncio.wait_for(asyncio.to_thread(send.release, self.db, outbox_id), RELEASE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - then its lease runs out and the next start sends it
            log.warning("cannot hand back the mail being sent; it is sent again when its lease ends",
                        outbox_id=outbox_id, error=str(exc) or type(exc).__name__)
        else:
            if released:
                log.info("mail being sent handed back, for the next start", outbox_id=outbox_id)


def _unreachable(error: str) -> dict[str, Any]:
    data: dict[str, Any] = {"database": {"reachable": False, "error": error}, "spool": None, "outbox": None,
                            "mailboxes": None, "tickets_open": None}
    data["attention"] = health.attention(data)
    return data


def write_pid_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"service.pid_file: cannot write {path}: {exc.strerror or exc}") from None


def remove_pid_file(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


async def serve(settings: Settings, db: Database, notifier: Notifier | None = None) -> bool:
    """Run until SIGTERM/SIGINT; True when everything in hand was finished in time."""
    notifier = notifier or Notifier.from_environment()
    os.environ.pop("NOTIFY_SOCKET", None)  # commands we run (password_command...) must not speak for us
    loop = asyncio.get_running_loop()
    daemon = Daemon(settings, db, notifier)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop_requested.set)
    started = False

    def hangup() -> None:
        if started:
            loop.create_task(daemon.reload(), name="reload")
        else:  # the settings being started with were read just now
            log.info("SIGHUP while starting: nothing to reload yet")

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await daemon.start()
    started = True
    tasks = [asyncio.create_task(daemon.sender.run(stopping), name="sender")]
    if daemon.config.processor.enabled:
        tasks.append(asyncio.create_task(daemon.processor.run(stopping), name="processor"))
    helpers = [asyncio.create_task(daemon.report_status(stopping), name="status")]
    interval = watchdog_interval()
    if interval is not None:
        helpers.append(asyncio.create_task(daemon.watchdog(interval, stopping), name="watchdog"))
    log.info("maildesk running", database=db.url.render_as_string(hide_password=True),
             processor=daemon.config.processor.enabled, pid=os.getpid())
    snapshot = daemon.last_snapshot
    notifier.ready(health.status_line(snapshot) if snapshot else None)
    await daemon.stop_requested.wait()
    clean = await daemon.stop(tasks, stopping)
    for helper in helpers:
        helper.cancel()
    log.info("maildesk stopped", clean=clean)
    notifier.close()
    return clean


def run_service(settings: Settings, db: Database) -> None:
    loop = asyncio.new_event_loop()
    try:
        clean = loop.run_until_complete(serve(settings, db))
        if not clean:
            # A worker thread is still stuck (in the database, or on a relay); its work was never
            # committed as done, so the next start picks it up. Waiting for it would outlast the timeout.
            sys.stderr.flush()
            os._exit(0)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
