"""The IMAP poller: takes mail from configured mailboxes into the inbound spool.

Per mailbox, one thread runs ``MailboxPoller.run``: connect, select the
folder, fetch everything with a UID above the remembered one (not "unseen":
mail another client read is still ours), then wait with IDLE or sleep
``poll_interval_seconds``, and again. An IDLE ends after
``idle_timeout_seconds`` even without news, and the folder is searched: a
server that fails to announce a message delays it, but never loses it.

Order of work for each batch, so nothing is lost and nothing is taken twice:

1. FETCH the raw bytes of up to ``batch_size`` messages in one command
   (BODY.PEEK[], so the \\Seen flag is left alone);
2. commit each to the spool (``spool.put``; identical bytes are stored once);
3. apply ``after`` on the server: MOVE to ``processed_folder`` (COPY +
   \\Deleted + UID EXPUNGE without MOVE), delete, or flag (\\Seen and the
   keyword ``$MaildeskProcessed``; the mail stays and is never fetched again
   because selection is by UID);
4. record the batch's highest UID and the counters.

A crash after 2 fetches the batch again on the next start; the spool
recognises the bytes (counted as deduplicated) and ``process()`` the
Message-ID, so no ticket is made twice, and step 3 is done then. When the
folder's UIDVALIDITY changes the whole folder is read again on the same
terms. A message the server fails to deliver makes its batch be fetched one
message at a time; after ``max_fetch_attempts`` failures (with backoff
between them) its UID is recorded as skipped and never asked for again.

Any error ends the session: the thread reconnects after an exponential
backoff with jitter, and one broken mailbox never touches the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from imapclient import DELETED, SEEN, IMAPClient

from maildesk import spool
from maildesk.config import Config, ImapConfig
from maildesk.db import Database
from maildesk.receive import imap_auth, imap_state

log = structlog.get_logger(__name__)

PROCESSED_KEYWORD = b"$MaildeskProcessed"
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]
IDLE_CHECK_SECONDS = 1.0
"""How often a waiting IDLE looks at the stop signal."""


@dataclass
class PollResult:
    fetched: int = 0
    deduplicated: int = 0


@dataclass(frozen=True)
class _Fetched:
    uid: int
    raw: bytes
    internaldate: datetime | None


def backoff_delay(failures: int, low: float, high: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after ``failures`` errors in a row: doubling, capped, half of it random."""
    ceiling = min(high, low * 2 ** max(0, failures - 1))
    return ceiling / 2 + rand() * ceiling / 2


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _new_mail_announced(client: IMAPClient) -> bool:
    """Did the server say "n EXISTS" alongside our last commands (and forget that it did)?

    A server announces new mail at the end of whatever command is running
    (RFC 3501 7.3.1); imapclient leaves such unsolicited responses in its
    imaplib connection, the only place they can be read.
    """
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


class MailboxPoller:
    """Fetches one configured mailbox into the spool; ``run`` until stopped, or ``run_once``."""

    use_move = True
    """Use the MOVE command when the server offers it (else COPY + \\Deleted + UID EXPUNGE)."""

    def __init__(self, box: ImapConfig, db: Database, *, on_spooled: Callable[[], None] | None = None,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        """``on_spooled``: new mail is in the spool; ``on_batch(new, duplicates)``: a batch was stored."""
        self.box = box
        self.db = db
        self.on_spooled = on_spooled or (lambda: None)
        self.on_batch = on_batch or (lambda _new, _duplicates: None)
        self.log = log.bind(mailbox=box.name)
        self.failures = 0
        self._fetch_failures: dict[int, int] = {}
        self._one_by_one_upto = 0
        self._keyword_allowed = False
        self._processed_folder_ready = False

    # -- the long-running loop -------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; never raises."""
        while not stop.is_set():
            try:
                with self.connected() as client:
                    self._serve(client, stop)
            except Exception as exc:  # noqa: BLE001 - any failure means: back off, reconnect
                self.failures += 1
                delay = backoff_delay(self.failures, self.box.reconnect_min_seconds, self.box.reconnect_max_seconds)
                error = describe(exc)
                self.log.warning("imap mailbox failed, reconnecting", error=error,
                                 failures=self.failures, retry_in=round(delay, 2))
                try:
                    imap_state.record_poll(self.db, self.box.name, error)
                except Exception as db_exc:  # noqa: BLE001 - the database may be what failed
                    self.log.warning("cannot record the imap error", error=describe(db_exc))
                stop.wait(delay)

    def _serve(self, client: IMAPClient, stop: threading.Event) -> None:
        self.select(client)
        idle = self.box.idle and client.has_capability("IDLE")
        self.log.info("imap mailbox connected", folder=self.box.folder, idle=idle)
        looked_again = False
        while not stop.is_set():
            _new_mail_announced(client)  # forget old news: this poll looks anyway
            result = self.poll(client)
            self.failures = 0
            # Mail announced during our own commands is not announced again in IDLE, so
            # look once more (but not forever, for servers that say EXISTS after every command).
            if _new_mail_announced(client) and (result.fetched or not looked_again):
                looked_again = True
                continue
            looked_again = False
            if idle:
                self._idle(client, stop)
            elif stop.wait(self.box.poll_interval_seconds):
                return

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """Wait in IDLE until new mail, stop, or ``idle_timeout_seconds`` (servers drop IDLE at 30 min)."""
        client.idle()
        # An EXISTS sent just before the server's "+ idling" is filed with the
        # untagged responses, not returned by idle_check: look there first.
        deadline = time.monotonic() + self.box.idle_timeout_seconds
        while not stop.is_set() and not _new_mail_announced(client):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(IDLE_CHECK_SECONDS, remaining)
            began = time.monotonic()
            responses = client.idle_check(timeout=wait)
            if any(r[0] == b"BYE" for r in responses):
                raise ConnectionError("the server ended the connection (BYE) during IDLE")
            if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                break
            if not responses and time.monotonic() - began < wait / 2:
                # idle_check returns at once with nothing only when the socket hit EOF.
                raise ConnectionError("the server closed the connection during IDLE")
        client.idle_done()

    # -- one session's work ----------------------------------------------------

    def run_once(self) -> PollResult:
        """Connect, fetch everything new, disconnect. Errors propagate (tests, `imap poll`)."""
        with self.connected() as client:
            self.select(client)
            return self.poll(client)

    @contextmanager
    def connected(self) -> Iterator[IMAPClient]:
        client = imap_auth.connect(self.box)
        client.normalise_times = False  # INTERNALDATE with its offset
        self._processed_folder_ready = False
        try:
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                client.shutdown()

    def select(self, client: IMAPClient) -> None:
        """Select the folder and settle where to start (first connect, UIDVALIDITY change)."""
        info = client.select_folder(self.box.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        flags = info.get(b"PERMANENTFLAGS", ())
        self._keyword_allowed = b"\\*" in flags or PROCESSED_KEYWORD in flags
        known = imap_state.position(self.db, self.box.name)
        if known.uidvalidity is None:
            start = 0 if self.box.import_existing else self._uidnext(client, info) - 1
            self.log.info("imap mailbox first seen", uidvalidity=uidvalidity, starting_after_uid=start,
                          import_existing=self.box.import_existing)
            imap_state.start_at(self.db, self.box.name, uidvalidity, start)
        elif known.uidvalidity != uidvalidity:
            self.log.warning("imap UIDVALIDITY changed: reading the whole folder again, duplicates are recognised",
                             old=known.uidvalidity, new=uidvalidity)
            imap_state.start_at(self.db, self.box.name, uidvalidity, 0)
            self._fetch_failures.clear()
            self._one_by_one_upto = 0

    @staticmethod
    def _uidnext(client: IMAPClient, info: dict[bytes, Any]) -> int:
        if b"UIDNEXT" in info:
            return int(info[b"UIDNEXT"])
        return max(client.search(["ALL"]), default=0) + 1

    def poll(self, client: IMAPClient) -> PollResult:
        """Fetch, spool and deal with every message above the remembered UID."""
        known = imap_state.position(self.db, self.box.name)
        found = client.search(["UID", f"{known.last_uid + 1}:*"])
        # "n:*" always names the highest UID, even when it is below n.
        uids = sorted(u for u in found if u > known.last_uid and u not in known.skipped)
        result = PollResult()
        for start in range(0, len(uids), self.box.batch_size):
            batch = uids[start:start + self.box.batch_size]
            messages = self._fetch(client, batch)
            new = duplicates = 0
            now = datetime.now(UTC)
            for message in messages:
                spooled = spool.put(self.db, message.raw, source=f"imap:{self.box.name}",
                                    envelope=self._envelope(message), notify=self._notify(message, now))
                duplicates += spooled.duplicate
                new += not spooled.duplicate
            self.on_batch(new, duplicates)
            if new:
                self.on_spooled()
            self.apply_after(client, [m.uid for m in messages])
            imap_state.record_batch(self.db, self.box.name, last_uid=batch[-1], fetched=len(messages),
                                    deduplicated=duplicates)
            result.fetched += len(messages)
            result.deduplicated += duplicates
            self.log.info("imap batch fetched", count=len(messages), new=new, deduplicated=duplicates,
                          last_uid=batch[-1])
        imap_state.record_poll(self.db, self.box.name)
        return result

    def _envelope(self, message: _Fetched) -> dict[str, Any]:
        envelope: dict[str, Any] = {"mailbox": self.box.name, "imap_uid": message.uid}
        if self.box.support_address:
            envelope["rcpt_to"] = [self.box.support_address]
        return envelope

    def _notify(self, message: _Fetched, now: datetime) -> bool:
        if not self.box.notify:
            return False
        if message.internaldate is None:
            return True
        arrived = message.internaldate
        if arrived.tzinfo is None:
            arrived = arrived.replace(tzinfo=UTC)
        return now - arrived <= timedelta(days=self.box.ack_max_age_days)

    def _fetch(self, client: IMAPClient, batch: list[int]) -> list[_Fetched]:
        """The batch's messages (those gone meanwhile are left out)."""
        if batch[0] > self._one_by_one_upto:
            try:
                return self._parse(client.fetch(batch, FETCH_ITEMS))
            except Exception:
                # One bad message fails the whole FETCH (Dovecot even disconnects):
                # next session, take this batch one message at a time to find it.
                self._one_by_one_upto = batch[-1]
                raise
        messages = []
        for uid in batch:
            try:
                messages += self._parse(client.fetch([uid], FETCH_ITEMS))
            except Exception as exc:
                attempts = self._fetch_failures[uid] = self._fetch_failures.get(uid, 0) + 1
                if attempts < self.box.max_fetch_attempts:
                    raise
                self.log.error("imap message cannot be fetched, skipped for good", uid=uid,
                               attempts=attempts, error=describe(exc))
                imap_state.record_skip(self.db, self.box.name, uid)
                client.noop()  # still connected? Otherwise the session ends here and resumes after it.
        return messages

    @staticmethod
    def _parse(response: dict[int, dict[bytes, Any]]) -> list[_Fetched]:
        return [
            _Fetched(uid, data[b"BODY[]"], data.get(b"INTERNALDATE"))
            for uid, data in sorted(response.items())
            if data.get(b"BODY[]") is not None
        ]

    # -- after the spool commit --------------------------------------------------

    def apply_after(self, client: IMAPClient, uids: list[int]) -> None:
        """Tell the server these messages are taken: move, delete or flag them."""
        if not uids:
            return
        if self.box.after == "flag":
            flags = [SEEN, PROCESSED_KEYWORD] if self._keyword_allowed else [SEEN]
            client.add_flags(uids, flags, silent=True)
        elif self.box.after == "delete":
            client.add_flags(uids, [DELETED], silent=True)
            self._expunge(client, uids)
        else:
            self._ensure_processed_folder(client)
            if self.use_move and client.has_capability("MOVE"):
                client.move(uids, self.box.processed_folder)
            else:
                client.copy(uids, self.box.processed_folder)
                client.add_flags(uids, [DELETED], silent=True)
                self._expunge(client, uids)

    @staticmethod
    def _expunge(client: IMAPClient, uids: list[int]) -> None:
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()  # without UIDPLUS, also other \Deleted mail: the only way there is

    def _ensure_processed_folder(self, client: IMAPClient) -> None:
        if self._processed_folder_ready:
            return
        folder = self.box.processed_folder
        if not client.folder_exists(folder):
            client.create_folder(folder)
            self.log.info("imap folder created", folder=folder)
            try:
                client.subscribe_folder(folder)
            except IMAPClient.Error:
                pass  # only a convenience for mail clients
        self._processed_folder_ready = True


class ImapPollers:
    """One thread per configured mailbox; ``start()`` and ``stop()`` them together."""

    def __init__(self, config: Config, db: Database, *, on_spooled: Callable[[], None] | None = None,
                 on_batch: Callable[[str, int, int], None] | None = None) -> None:
        """``on_batch(mailbox, new, duplicates)``: called from the poller's thread after each stored batch."""
        self.pollers = [
            MailboxPoller(box, db, on_spooled=on_spooled,
                          on_batch=(lambda new, dup, name=box.name: on_batch(name, new, dup)) if on_batch else None)
            for box in config.imap
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for poller in self.pollers:
            thread = threading.Thread(target=poller.run, args=(self._stop,), name=f"imap-{poller.box.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        """Signal every poller; wait for them (IDLE notices within a second) up to ``timeout`` in all."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("imap poller still busy at shutdown", thread=thread.name)
        self._threads.clear()
