"""Who is an agent: reply tokens, agent reply addresses and trusted Authentication-Results.

Pure: no database, no network. The caller (process.py) reads what it needs
(the configured agents, the Message-IDs of the notifications maildesk sent
to each agent) and asks these functions.

A mail counts as an agent's only when its From is a configured agent *and*
it proves that it answers something maildesk sent to that agent:

- **Reply address.** Every notification to an agent carries
  ``Reply-To: support+<ticket>.<token>@domain`` where ``token`` is
  ``reply_token(secret, ticket, agent)``: an HMAC-SHA256 over the ticket
  number and the agent's lower-cased address. A mail sent to that address
  by that agent proves it answers that ticket's notification. The HMAC
  covers both, so a token of ticket A used on ticket B, or one agent's token
  used by another agent, proves nothing.
- **Notification Message-ID.** Its In-Reply-To or References name the
  Message-ID of a notification maildesk sent to that agent on that ticket.

``identify()`` combines both. Optionally (``desk.agent_auth = "dmarc"``)
``authentication_results_pass()`` must also say that the agent's domain
passed DMARC or DKIM, judged only from the topmost Authentication-Results
header our own border MTA wrote (RFC 8601 §5). That holds only when the
border MTA (OpenDMARC, OpenDKIM, rspamd, ...) adds its header to every mail
it accepts and removes headers carrying its authserv-id from incoming mail,
as RFC 8601 §5 asks; otherwise a sender could put one on top themselves.

Decisions, so that nobody has to guess them:

- Tokens are 20 lower-case base32 characters (100 bits of the HMAC). Mail
  systems may change the case of a local part, so tokens are compared
  case-insensitively (and in constant time).
- ``agent_reply_address`` drops a ``+tag`` the support address may already
  have: ``support+billing@x`` gives ``support+42.<token>@x``. The ticket
  already knows its queue; the tag is not needed to route the reply, and a
  second ``+`` would not be a sub-address any MTA strips.
- A DKIM signature counts for the agent's domain when its ``header.d`` (or
  the domain of ``header.i``) is that domain or a subdomain of it
  (``d=mail.example.com`` for ``bob@example.com``), never a parent domain.
  ``dmarc=pass`` counts only with ``header.from`` equal to the domain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "AgentReplyAddress", "AuthResult", "Identity", "MAX_TICKET_ID", "SECRET_BYTES", "TOKEN_LENGTH", "SecretError",
    "agent_reply_address", "authentication_results_pass", "create_secret_file", "identify", "new_secret",
    "parse_agent_reply_address", "parse_authentication_results", "read_secret_file", "reply_token", "verify",
]

SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
TOKEN_LENGTH = 20
"""Base32 characters of the token: 100 bits."""
MAX_TICKET_ID = 2**31 - 1
_TOKEN_LABEL = b"maildesk agent reply v1"
_MAX_LOCAL_PART = 64
"""RFC 5321 §4.5.3.1.1."""
_DETAIL = re.compile(rf"([1-9][0-9]{{0,9}})\.([a-z2-7]{{{TOKEN_LENGTH}}})", re.IGNORECASE)
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~\-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class SecretError(ValueError):
    """The secret file cannot be used: one line saying why."""


# --- tokens and addresses -------------------------------------------------------------------------


def new_secret() -> bytes:
    """A fresh random secret for ``desk.secret_file``."""
    return secrets.token_bytes(SECRET_BYTES)


def read_secret_file(path: Path | str) -> bytes:
    """The secret in ``path`` (raw bytes, at least 16); ``SecretError`` with one line otherwise."""
    try:
        secret = Path(path).read_bytes()
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist (create one with 32 random bytes)") from None
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"secret file {path} holds {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed")
    return secret


def create_secret_file(path: Path | str) -> bytes:
    """Write a new secret to ``path`` (mode 0600, never over an existing file) and return it;
    ``SecretError`` with one line when the file exists or cannot be written."""
    secret = new_secret()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretError(f"secret file {path} exists already; it is not replaced") from None
    except OSError as exc:
        raise SecretError(f"cannot create secret file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secret)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        Path(path).unlink(missing_ok=True)
        raise SecretError(f"cannot write secret file {path}: {exc.strerror or exc}") from None
    return secret


def _check_ticket_id(ticket_id: int) -> None:
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int) or not 0 < ticket_id <= MAX_TICKET_ID:
        raise ValueError(f"ticket number must be 1..{MAX_TICKET_ID}, got {ticket_id!r}")


def reply_token(secret: bytes, ticket_id: int, agent: str) -> str:
    """The token proving a reply to ``agent``'s notification on ticket ``ticket_id``."""
    _check_ticket_id(ticket_id)
    if not secret:
        raise ValueError("an empty secret proves nothing")
    message = b"\x00".join([_TOKEN_LABEL, str(ticket_id).encode(), agent.strip().lower().encode("utf-8")])
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def verify(secret: bytes, ticket_id: int, agent: str, token: str) -> bool:
    """True when ``token`` is ``agent``'s token for ``ticket_id`` (case-insensitive, constant time)."""
    try:
        expected = reply_token(secret, ticket_id, agent)
    except ValueError:
        return False
    if not isinstance(token, str) or not token.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), token.lower().encode("ascii"))


class AgentReplyAddress(NamedTuple):
    base_address: str
    """The support address without the ``+ticket.token`` part, lower-cased."""
    ticket_id: int
    token: str
    """Lower-cased."""


def agent_reply_address(support_address: str, ticket_id: int, token: str) -> str:
    """``support+<ticket>.<token>@domain``; an existing ``+tag`` of the support address is dropped.

    ValueError when the support address is not ``local@domain``, the token is not one of ours,
    or the local part would exceed 64 characters (support local parts up to 32 characters fit).
    """
    _check_ticket_id(ticket_id)
    local, at, domain = support_address.strip().rpartition("@")
    base_local = local.split("+", 1)[0]
    if not at or not _LOCAL.fullmatch(base_local) or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a support address: {support_address!r}")
    if not re.fullmatch(rf"[a-z2-7]{{{TOKEN_LENGTH}}}", token.lower()):
        raise ValueError(f"not a reply token: {token!r}")
    reply_local = f"{base_local}+{ticket_id}.{token.lower()}"
    if len(reply_local) > _MAX_LOCAL_PART:
        raise ValueError(f"support address {support_address!r}: its local part is too long for an agent reply address")
    return f"{reply_local}@{domain}"


def parse_agent_reply_address(address: str) -> AgentReplyAddress | None:
    """The parts of ``support+<ticket>.<token>@domain``; None for anything else or malformed."""
    if not isinstance(address, str) or len(address) > 320:
        return None
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    base_local, plus, detail = local.partition("+")
    if not (at and plus and _LOCAL.fullmatch(base_local) and _DOMAIN.fullmatch(domain)):
        return None
    match = _DETAIL.fullmatch(detail)
    if match is None:
        return None
    ticket_id = int(match.group(1))
    if ticket_id > MAX_TICKET_ID:
        return None
    return AgentReplyAddress(f"{base_local}@{domain}".lower(), ticket_id, match.group(2).lower())


# --- who is an agent ------------------------------------------------------------------------------

REPLY_ADDRESS, NOTIFICATION = "reply_address", "notification"


@dataclass(frozen=True)
class Identity:
    """What ``identify`` found. ``agent`` is None when the mail is not an agent's."""

    agent: str | None
    ticket_id: int | None = None
    """The ticket the proof is for: the mail belongs on this ticket and no other."""
    proof: str = ""
    """``reply_address`` or ``notification``; empty when nothing was proven."""
    reason: str = ""
    """In words, for the ticket's history and the log."""

    @property
    def is_agent(self) -> bool:
        return self.agent is not None


def identify(
    *,
    sender: str,
    agents: Collection[str],
    recipients: Iterable[str],
    referenced_ids: Sequence[str],
    notifications: Mapping[str, tuple[int, str]],
    secret: bytes,
    ticket_id: int | None = None,
) -> Identity:
    """Whether the mail from ``sender`` is an agent's, and for which ticket.

    ``agents``: the configured agents' addresses (lower-case). ``recipients``: the
    addresses the mail was sent to (envelope recipients and To/Cc). ``referenced_ids``:
    its In-Reply-To and References (newest first is best). ``notifications``: for those
    ids that are notifications maildesk sent, Message-ID -> (ticket, agent address it
    went to), as the caller read them. ``ticket_id``: when the caller already knows the
    ticket (threading), only a proof for that ticket counts.
    """
    agent = sender.strip().lower()
    if agent not in {known.lower() for known in agents}:
        return Identity(None, reason="the sender is not a configured agent")
    for recipient in recipients:
        parsed = parse_agent_reply_address(recipient)
        if parsed is None or (ticket_id is not None and parsed.ticket_id != ticket_id):
            continue
        if verify(secret, parsed.ticket_id, agent, parsed.token):
            return Identity(agent, parsed.ticket_id, REPLY_ADDRESS,
                            f"sent to {agent}'s reply address of ticket #{parsed.ticket_id}")
    for message_id in referenced_ids:
        sent = notifications.get(message_id)
        if sent is None:
            continue
        sent_ticket, sent_to = sent
        if sent_to.lower() == agent and (ticket_id is None or sent_ticket == ticket_id):
            return Identity(agent, sent_ticket, NOTIFICATION,
                            f"answers notification {message_id} sent to {agent} on ticket #{sent_ticket}")
    return Identity(None, reason=f"{agent} is an agent, but the mail does not answer a notification sent to them"
                                 + (f" on ticket #{ticket_id}" if ticket_id is not None else ""))


# --- Authentication-Results (RFC 8601) ------------------------------------------------------------

WORD, QUOTED, SPECIAL = "word", "quoted", "special"


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    glued: bool
    """Nothing (no blank, no comment) stands between it and the token before."""


def _tokens(value: str) -> list[_Token]:
    """Words, quoted strings and the specials ``;`` and ``=`` of a header value; comments dropped."""
    tokens: list[_Token] = []
    word: list[str] = []
    glued = False
    i, length = 0, len(value)

    def flush() -> None:
        nonlocal glued
        if word:
            tokens.append(_Token(WORD, "".join(word), glued))
            word.clear()
            glued = True

    while i < length:
        char = value[i]
        if char == "(":
            flush()
            depth = 1
            i += 1
            while i < length and depth:
                if value[i] == "\\":
                    i += 1
                elif value[i] == "(":
                    depth += 1
                elif value[i] == ")":
                    depth -= 1
                i += 1
            glued = False
            continue
        if char == '"':
            flush()
            quoted: list[str] = []
            i += 1
            while i < length and value[i] != '"':
                if value[i] == "\\" and i + 1 < length:
                    i += 1
                quoted.append(value[i])
                i += 1
            tokens.append(_Token(QUOTED, "".join(quoted), glued))
            glued = True
            i += 1
            continue
        if char in ";=":
            flush()
            tokens.append(_Token(SPECIAL, char, glued))
            glued = True
        elif char.isspace():
            flush()
            glued = False
        else:
            word.append(char)
        i += 1
    flush()
    return tokens


@dataclass(frozen=True)
class AuthResult:
    method: str
    result: str
    properties: dict[str, str]
    """``header.from``, ``header.d``, ``header.i``, ``smtp.mailfrom`` ... (keys lower-cased)."""


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """``(authserv_id, results)`` of one Authentication-Results value; ``("", [])`` when unreadable."""
    segments: list[list[_Token]] = [[]]
    for token in _tokens(value):
        if token.kind == SPECIAL and token.text == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    head = segments[0]
    if not head or head[0].kind != WORD:
        return "", []
    results = [result for segment in segments[1:] if (result := _resinfo(segment)) is not None]
    return head[0].text.lower(), results


def _resinfo(segment: list[_Token]) -> AuthResult | None:
    """``method[/version]=result (reason=x)? (ptype.property=value)*``; None when malformed or ``none``.

    A value runs on over tokens glued to it: ``header.b=ab/Cd+e==`` is one value."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(segment):
        if i + 2 >= len(segment):
            return None
        name, equals, first = segment[i], segment[i + 1], segment[i + 2]
        if name.kind != WORD or equals.kind != SPECIAL or equals.text != "=" or first.kind == SPECIAL:
            return None
        value = [first.text]
        i += 3
        while i < len(segment) and segment[i].glued:
            value.append(segment[i].text)
            i += 1
        pairs.append((name.text.lower(), "".join(value)))
    if not pairs:
        return None
    (method, result), properties = pairs[0], dict(pairs[1:])
    return AuthResult(method.split("/", 1)[0], result.lower(), properties)


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].strip().rstrip(".").lower()


def _within(domain: str, agent_domain: str) -> bool:
    return domain == agent_domain or domain.endswith("." + agent_domain)


def authentication_results_pass(headers: Iterable[tuple[str, str]], authserv_id: str, domain: str) -> tuple[bool, str]:
    """Whether our own Authentication-Results say ``domain`` passed DMARC or DKIM, and why (not).

    ``headers``: the mail's headers in order, top first. Only the topmost
    Authentication-Results with ``authserv_id`` counts: our border MTA adds its
    header on top; anything below it, or written by another server, may be forged.
    """
    ours = authserv_id.strip().lower()
    agent_domain = domain.strip().rstrip(".").lower()
    if not ours or not agent_domain:
        return False, "no authserv-id or domain to check"
    for name, value in headers:
        if name.strip().lower() != "authentication-results":
            continue
        found_id, results = parse_authentication_results(str(value))
        if found_id != ours:
            continue
        for result in results:
            if result.result != "pass":
                continue
            if result.method == "dmarc" and _domain_of(result.properties.get("header.from", "")) == agent_domain:
                return True, f"dmarc=pass for {agent_domain} ({ours})"
            if result.method == "dkim":
                signer = result.properties.get("header.d") or _domain_of(result.properties.get("header.i", ""))
                if signer and _within(signer.lower().rstrip("."), agent_domain):
                    return True, f"dkim=pass by {signer.lower()} for {agent_domain} ({ours})"
        summary = ", ".join(f"{r.method}={r.result}" for r in results) or "no results"
        return False, f"Authentication-Results of {ours} show no dmarc or dkim pass for {agent_domain} ({summary})"
    return False, f"no Authentication-Results header of {ours}"
