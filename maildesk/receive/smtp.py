"""The SMTP/LMTP listener: accept mail for the addresses we serve, durably.

``start_server()`` opens the listener on the running asyncio loop (``maildesk
serve`` calls it). A message is answered ``250`` only after the spool has
committed it (messages arriving together share one commit, see
receive/spool_writer.py); anything that stops the commit (database locked, unreachable,
disk full, a bug) is answered ``451 4.3.0`` so the sender keeps it and retries.
RCPT accepts only the support addresses, their ``+tag`` sub-addresses and the
note address (``550 5.1.1`` otherwise): maildesk is never a relay. A mail
that has passed more than 100 relays is refused ``554 5.4.0`` (a loop). Processing
happens later, in the processor; this module decides nothing about tickets.
When the daemon stops, ``Listener.drain()`` answers new sessions ``421`` and
waits for the messages being received, then ``stop()`` closes the rest
(``421`` too); a reload hands the listener new recipients and limits
(``reconfigure()``).

The envelope stored with each message: ``mail_from``, ``rcpt_to`` (list),
``client_address``, ``helo``, ``tls`` (bool), ``protocol`` and, with AUTH,
``auth_user``. LMTP answers once per accepted recipient after DATA; the
message is still one spool row that lists every recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from maildesk.config import Config, SmtpConfig
from maildesk.db import Database
from maildesk.errors import ConfigError, TemporaryFailure
from maildesk.mail.classify import MAX_HOPS, hop_count
from maildesk.receive.smtp_data import read_data
from maildesk.receive.spool_writer import SpoolWriter
from maildesk.turns import Turns

log = structlog.get_logger(__name__)

IDENT = "maildesk"
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
TOO_BIG = "552 5.3.4 Message too big for system"
CLOSING = "421 4.3.0 Temporary failure, closing connection; please try again later"
BUSY = b"421 4.3.2 Too many connections, try again later\r\n"
SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"

Accepted = Callable[[int], None]


class Counters(Protocol):
    """Where the listener counts its sessions, replies and messages (the daemon's metrics)."""

    def smtp_session(self) -> None: ...

    def smtp_reply(self, code: str) -> None: ...

    def message_received(self, source: str, *, duplicate: bool) -> None: ...


class _NoCounters:
    def smtp_session(self) -> None:
        pass

    def smtp_reply(self, code: str) -> None:
        pass

    def message_received(self, source: str, *, duplicate: bool) -> None:
        pass


class Handler:
    """aiosmtpd hooks: recipient policy, size limit, and the durable commit."""

    def __init__(self, config: Config, db: Database, on_accepted: Accepted | None = None,
                 turns: Turns | None = None, counters: Counters | None = None) -> None:
        self.config = config
        self.counters = counters or _NoCounters()
        self.smtp = config.smtp
        self.db = db
        turns = turns or Turns(serialize=db.is_sqlite)
        self.writer = SpoolWriter(db, turn=turns.urgent)
        self.on_accepted = on_accepted or (lambda _inbound_id: None)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        # aiosmtpd's own SIZE check answers without an enhanced status code,
        # so the limit is advertised here and enforced in MAIL and DATA.
        session.host_name = hostname
        return [responses[0], f"250-SIZE {self.smtp.max_message_size}", *responses[1:]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        for option in options:
            name, _, value = option.partition("=")
            if name == "SIZE" and value.isdigit() and int(value) > self.smtp.max_message_size:
                return TOO_BIG
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        if not self.serves(address):
            log.info("recipient refused", rcpt_to=address, client=_client_address(session))
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    def serves(self, address: str) -> bool:
        if self.config.address_for(address) is not None:
            return True
        note = self.config.desk.note_address
        local, _, domain = address.lower().rpartition("@")
        return note is not None and note in (address.lower(), f"{local.split('+', 1)[0]}@{domain}")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        replies = len(envelope.rcpt_tos) if isinstance(server, LMTP) else 1
        if not raw.strip():
            return _each("554 5.6.0 Empty message", replies)
        hops = hop_count(raw)
        if hops > MAX_HOPS:
            log.warning("message refused: a mail loop", hops=hops, client=_client_address(session),
                        mail_from=envelope.mail_from)
            return _each(f"554 5.4.0 Too many hops ({hops} Received headers): a mail loop", replies)
        details = {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "client_address": _client_address(session),
            "helo": session.host_name,
            "tls": session.ssl is not None,
            "protocol": self.smtp.protocol,
        }
        if session.authenticated:
            details["auth_user"] = session.login_data.decode("utf-8", "replace")
        bound = log.bind(client=details["client_address"], mail_from=details["mail_from"], size=len(raw))
        try:
            spooled = await self.writer.put(raw, self.smtp.protocol, details)
        except TemporaryFailure as exc:
            bound.warning("message not accepted, sender will retry", error=str(exc))
            return _each(TRY_LATER, replies)
        except Exception:  # noqa: BLE001 - the sender keeps the mail and retries; we log the bug
            bound.exception("message not accepted: unexpected error")
            return _each(TRY_LATER, replies)
        bound.info("message accepted", inbound_id=spooled.id, duplicate=spooled.duplicate,
                   rcpt_to=details["rcpt_to"])
        self.counters.message_received(self.smtp.protocol, duplicate=spooled.duplicate)
        self.on_accepted(spooled.id)
        return _each(f"250 2.0.0 OK queued as {spooled.id}", replies)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error", error=repr(error))
        return TRY_LATER


def _each(reply: str, count: int) -> str:
    """One reply per accepted recipient (LMTP), or the single SMTP reply."""
    return "\r\n".join([reply] * max(count, 1))


def _client_address(session: Session) -> str | None:
    peer = session.peer
    return peer[0] if isinstance(peer, tuple) and peer else None


class _Dialogue:
    """What our SMTP and LMTP sessions change in aiosmtpd: DATA, and the connection count."""

    sessions: set[Any]
    data_limit: int
    counters: Counters
    in_hand: bool = False
    """Between DATA's 354 and its reply: a message the listener must finish before it stops."""

    async def push(self: Any, status: str | bytes) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        for line in text.split("\r\n"):
            self.counters.smtp_reply(line[:3])
        await super().push(status)  # type: ignore[misc]

    @syntax("DATA")
    async def smtp_DATA(self: Any, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.in_hand = True
        try:
            data = await read_data(self._reader, self.data_limit, progress=self._reset_timeout)
            if data is None:
                return
            replies = len(self.envelope.rcpt_tos) if isinstance(self, LMTP) else 1
            if data.too_big:
                status = _each(TOO_BIG, replies)
            else:
                self.envelope.content = self.envelope.original_content = data.content
                status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)
        finally:
            self.in_hand = False

    async def handle_exception(self: Any, error: Exception) -> str:
        """A bug in the session itself (the spool write answers 451 on its own): a temporary failure.

        An LMTP client that sent DATA waits for one reply per recipient, and
        after an error we cannot know how many are owed; 421 and closing the
        connection tells it, unambiguously, that all of them failed for now.
        """
        status = await super().handle_exception(error)  # type: ignore[misc]
        if isinstance(self, LMTP):
            asyncio.get_running_loop().call_soon(self.transport.close)  # after the 421 is written
            return CLOSING
        return status

    def connection_lost(self: Any, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)  # type: ignore[misc]


class SmtpDialogue(_Dialogue, SMTP):
    pass


class LmtpDialogue(_Dialogue, LMTP):
    pass


class _Refused(asyncio.Protocol):
    """Greets a connection with a 421 (too many sessions, or shutting down) and closes it."""

    def __init__(self, reply: bytes, counters: Counters) -> None:
        self.reply = reply
        counters.smtp_reply(reply[:3].decode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.reply)
        transport.close()


def tls_context(smtp: SmtpConfig) -> ssl.SSLContext | None:
    if smtp.tls_cert is None or smtp.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(smtp.tls_cert, smtp.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp.tls_cert/tls_key: cannot load {smtp.tls_cert} / {smtp.tls_key}: {exc}") from None
    return context


def authenticator(smtp: SmtpConfig) -> Callable[..., AuthResult] | None:
    """Check AUTH PLAIN/LOGIN against the configured accounts (None without accounts)."""
    if not smtp.auth:
        return None
    accounts: dict[bytes, bytes] = {}
    for index, login in enumerate(smtp.auth):
        try:
            password = login.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"smtp.auth.{index}.password_file: cannot read {login.password_file}: {exc}") from None
        accounts[login.username.encode()] = password.encode()

    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            expected = accounts.get(data.login)
            if expected is not None and hmac.compare_digest(expected, data.password):
                return AuthResult(success=True, auth_data=data)
            log.warning("AUTH failed", username=data.login.decode("utf-8", "replace"),
                        client=_client_address(session))
        return AuthResult(success=False, handled=False)

    return check


@dataclass
class Listener:
    """A running listener: its server, its open sessions and the port it got."""

    server: asyncio.Server
    sessions: set[Any] = field(default_factory=set)
    handler: Handler | None = None
    draining: bool = False

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def bound(self) -> bool:
        return self.server.is_serving() and not self.draining

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config: recipients and limits (the address needs a restart)."""
        if self.handler is not None:
            self.handler.config, self.handler.smtp = config, config.smtp

    async def drain(self, timeout: float) -> None:
        """Stop taking mail: new sessions get 421; wait (up to ``timeout``) for messages in hand."""
        self.draining = True
        deadline = asyncio.get_running_loop().time() + timeout
        while any(session.in_hand for session in self.sessions):
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("stopping with messages still being received; their senders will retry",
                            count=sum(session.in_hand for session in self.sessions))
                break
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop listening and close every open session with 421 (their senders will retry)."""
        self.server.close()
        for session in list(self.sessions):
            transport = session.transport
            if transport is not None:
                if not session.in_hand and not transport.is_closing():
                    # Best effort: a TLS session may be half torn down already.
                    with contextlib.suppress(Exception):
                        transport.write(SHUTTING_DOWN)
                transport.close()
        await self.server.wait_closed()


async def start_server(config: Config, db: Database, on_accepted: Accepted | None = None,
                       turns: Turns | None = None, counters: Counters | None = None) -> Listener:
    """Listen on ``[smtp] host:port`` (port 0: any free port) until ``Listener.stop()``.

    ``turns`` is shared with the processor of the same daemon (see maildesk.turns);
    ``counters`` hears of every session and reply.
    """
    smtp = config.smtp
    count = counters or _NoCounters()
    handler = Handler(config, db, on_accepted, turns, count)
    dialogue = LmtpDialogue if smtp.protocol == "lmtp" else SmtpDialogue
    context = tls_context(smtp)
    check = authenticator(smtp)
    sessions: set[Any] = set()
    listener: Listener | None = None

    def factory() -> asyncio.Protocol:
        smtp = handler.smtp  # limits as last reloaded
        count.smtp_session()
        if listener is not None and listener.draining:
            return _Refused(SHUTTING_DOWN, count)
        if len(sessions) >= smtp.max_connections:
            log.warning("connection refused: too many sessions", limit=smtp.max_connections)
            return _Refused(BUSY, count)
        session = dialogue(
            handler,
            data_size_limit=None,
            enable_SMTPUTF8=True,
            hostname=config.desk.domain,
            ident=IDENT,
            tls_context=context,
            require_starttls=smtp.require_tls,
            timeout=smtp.idle_timeout_seconds,
            auth_required=check is not None,
            authenticator=check,
        )
        session.data_limit = smtp.max_message_size
        session.sessions = sessions
        session.counters = count
        sessions.add(session)
        return session

    try:
        server = await asyncio.get_running_loop().create_server(factory, smtp.host, smtp.port)
    except OSError as exc:
        raise ConfigError(f"smtp.host/smtp.port: cannot listen on {smtp.host}:{smtp.port}: {exc.strerror or exc}") from None
    listener = Listener(server, sessions, handler)
    log.info("listening", protocol=smtp.protocol, host=smtp.host, port=listener.port,
             tls=context is not None, auth=check is not None)
    return listener
