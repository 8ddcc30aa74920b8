"""Drain the outbox: deliver due mail through a transport, retry, give up, report.

``flush()`` sends every due ``queued`` row once and returns. Each row is
claimed in a short transaction (its next attempt is pushed out by a lease,
so a second daemon skips it and a crash mid-send retries it later: at least
once), delivered with no transaction open, and its outcome written in a
second transaction:

* delivered: ``sent``;
* temporary failure (4xx, connection refused, timeout): retried after
  ``backoff_seconds``, doubling up to ``backoff_max_seconds``, until
  ``max_attempts`` or ``max_age_hours``, then ``failed``;
* permanent failure (5xx): ``failed`` at once.

A failure is recorded on the ticket by the desk (``desk.outbound``); this
module decides nothing about tickets. Transports: ``file`` (one ``.eml``
per mail in a directory, the default) and ``smtp`` (a relay).
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

import structlog
from sqlalchemy import select

from maildesk import credentials
from maildesk.config import Config, OutboundConfig
from maildesk.db import Database
from maildesk.desk import outbound
from maildesk.models import Outbox

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class DeliveryError(Exception):
    permanent = False


class TemporaryDeliveryError(DeliveryError):
    """Worth trying again later: 4xx, relay unreachable, timeout."""


class PermanentDeliveryError(DeliveryError):
    """The relay refused the mail for good (5xx)."""

    permanent = True


class Transport(Protocol):
    def send(self, sender: str, recipients: list[str], raw: bytes, *, name: str) -> None: ...

    def close(self) -> None: ...


class FileTransport:
    """Writes each mail as ``NAME.eml`` into a directory (atomically: temp file, then rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, sender: str, recipients: list[str], raw: bytes, *, name: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            target = self.directory / f"{name}.eml"
            temporary = target.with_suffix(".tmp")
            with open(temporary, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write {self.directory}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        pass


class SmtpTransport:
    """Sends through a relay, keeping one connection open for a whole flush."""

    def __init__(self, config: OutboundConfig, local_hostname: str | None = None) -> None:
        self.config = config
        self.local_hostname = local_hostname
        self._connection: smtplib.SMTP | None = None

    def send(self, sender: str, recipients: list[str], raw: bytes, *, name: str) -> None:
        try:
            refused = self._connect().sendmail(sender, recipients, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in exc.recipients.items())
            error = PermanentDeliveryError if all(c >= 500 for c in codes) else TemporaryDeliveryError
            raise error(f"recipients refused: {detail}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise TemporaryDeliveryError(f"relay refused our login: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            error = PermanentDeliveryError if exc.smtp_code >= 500 else TemporaryDeliveryError
            raise error(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise TemporaryDeliveryError(f"relay {self.config.host}:{self.config.port}: {exc or type(exc).__name__}") from exc
        if refused:
            log.warning("some recipients refused", name=name, refused=str(refused))

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            try:
                self._connection.noop()
                return self._connection
            except (smtplib.SMTPException, OSError):
                self.close()
        c = self.config
        context = ssl.create_default_context()
        if c.tls == "ssl":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, local_hostname=self.local_hostname, timeout=c.timeout_seconds, context=context
            )
        else:
            connection = smtplib.SMTP(c.host, c.port, local_hostname=self.local_hostname, timeout=c.timeout_seconds)
        try:
            if c.tls == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if c.username and c.oauth2_token_command:
                token = _run_token_command(c.oauth2_token_command, c.timeout_seconds)
                connection.ehlo_or_helo_if_needed()
                connection.auth("XOAUTH2", lambda _challenge=None: f"user={c.username}\x01auth=Bearer {token}\x01\x01",
                                initial_response_ok=True)
            elif c.username and c.password is not None:
                connection.login(c.username, c.password.get_secret_value())
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()


def _run_token_command(command: str, timeout: float) -> str:
    try:
        return credentials.from_command(command, timeout=timeout)
    except credentials.CredentialError as exc:
        raise TemporaryDeliveryError(f"oauth2_token_command {exc}") from None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def make_transport(config: Config) -> Transport:
    if config.outbound.transport == "smtp":
        return SmtpTransport(config.outbound, local_hostname=config.desk.domain)
    return FileTransport(config.outbound.directory)


def backoff(attempts: int, config: OutboundConfig) -> timedelta:
    """The wait after the ``attempts``-th failed try: base, 2x base, 4x base ... capped."""
    seconds = config.backoff_seconds * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, config.backoff_max_seconds))


@dataclass(frozen=True)
class Claimed:
    id: int
    sender: str
    recipients: list[str]
    raw: bytes
    attempts: int
    created_at: datetime
    kind: str = ""


@dataclass(frozen=True)
class SendResult:
    outbox_id: int
    status: str
    error: str = ""
    kind: str = ""


def utc_now() -> datetime:
    return datetime.now(UTC)


def flush(
    db: Database,
    config: Config,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
    limit: int | None = None,
    only: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    in_hand: Callable[[int | None], None] | None = None,
) -> list[SendResult]:
    """Send every due queued mail once (or ``only`` that one); return what happened to each.

    ``should_stop``: asked before each mail is claimed; True ends the flush (the daemon is stopping).
    ``in_hand``: told the id of each mail claimed, and None once its outcome is recorded.
    """
    transport = transport or make_transport(config)
    told = in_hand or (lambda _outbox_id: None)
    results: list[SendResult] = []
    try:
        while (limit is None or len(results) < limit) and not (should_stop and should_stop()):
            claimed = _claim(db, config, clock(), only)
            if claimed is None:
                break
            told(claimed.id)
            results.append(_deliver(db, config, transport, claimed, clock))
            told(None)
            if only is not None:
                break
    finally:
        transport.close()
    return results


def release(db: Database, outbox_id: int, *, clock: Clock = utc_now) -> bool:
    """Hand back a claimed mail whose sending was abandoned (the daemon stopping): due again now,
    instead of when its lease runs out. It may have reached the relay: sending stays at least once."""
    with db.session() as session:
        row = session.get(Outbox, outbox_id, with_for_update=True)
        if row is None or row.status != outbound.QUEUED:
            return False
        row.next_attempt_at = clock()
        return True


def _lease(config: OutboundConfig) -> timedelta:
    return timedelta(seconds=3 * config.timeout_seconds + 60)


def _claim(db: Database, config: Config, now: datetime, only: int | None) -> Claimed | None:
    with db.session() as session:
        query = (
            select(Outbox)
            .where(Outbox.status == outbound.QUEUED, Outbox.next_attempt_at <= now)
            .order_by(Outbox.next_attempt_at, Outbox.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if only is not None:
            query = query.where(Outbox.id == only)
        row = session.scalar(query)
        if row is None:
            return None
        row.attempts += 1
        row.next_attempt_at = now + _lease(config.outbound)
        headers = BytesHeaderParser().parsebytes(row.raw)
        sender = next((addr for _, addr in getaddresses(headers.get_all("From", []))), "")
        return Claimed(row.id, sender, list(row.to), row.raw, row.attempts, row.created_at, row.kind)


def _deliver(db: Database, config: Config, transport: Transport, claimed: Claimed, clock: Clock) -> SendResult:
    bound = log.bind(outbox_id=claimed.id, to=claimed.recipients, attempt=claimed.attempts)
    error: DeliveryError | None = None
    try:
        transport.send(claimed.sender, claimed.recipients, claimed.raw, name=f"{claimed.id:08d}")
    except DeliveryError as exc:
        error = exc
    now = clock()
    with db.session() as session:
        row = session.get(Outbox, claimed.id)
        assert row is not None
        if error is None:
            row.status, row.sent_at, row.last_error = outbound.SENT, now, None
            outbound.delivered(session, row, now=now)
            bound.info("mail sent")
            return SendResult(row.id, row.status, kind=claimed.kind)
        row.last_error = str(error)
        limits = config.outbound
        too_old = now - claimed.created_at >= timedelta(hours=limits.max_age_hours)
        if error.permanent or claimed.attempts >= limits.max_attempts or too_old:
            why = ("refused" if error.permanent
                   else f"gave up after {claimed.attempts} attempts" if not too_old
                   else f"gave up after {limits.max_age_hours:g} hours")
            row.status, row.reason = outbound.FAILED, f"{why}: {error}"
            outbound.delivery_failed(session, row, row.reason, now=now)
            bound.warning("mail failed", error=row.reason)
        else:
            row.next_attempt_at = now + backoff(claimed.attempts, limits)
            bound.info("mail deferred", error=str(error), next_attempt_at=row.next_attempt_at.isoformat())
        return SendResult(row.id, row.status, row.last_error or "", claimed.kind)
