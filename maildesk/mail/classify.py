"""Tell automated mail from mail written by a person, and say why.

``classify()`` is a pure function over a parsed stdlib message (either
``email.policy.compat32`` or ``email.policy.default``): no database, no
network, no configuration.  Headers are read through ``raw_items()`` and
decoded here, so both policies give the same answer.

Order of precedence -- the first rule that matches decides:

1. ``loop``: an ``X-Loop`` header equals one of ``loop_ids``, or the mail
   has passed more than ``MAX_HOPS`` relays (``Received`` headers).
2. ``complaint``: an abuse report in the Abuse Reporting Format (RFC 5965:
   ``multipart/report; report-type=feedback-report`` or a
   ``message/feedback-report`` part); ``bounced_message_ids`` names the mail
   complained about, as for a bounce.
3. ``bounce``: the message is a DSN (``multipart/report;
   report-type=delivery-status``, or a ``message/delivery-status`` part in
   any other multipart) reporting a failure or a delay; or
   flufl.bounce finds failed recipients; or the sender is MAILER-DAEMON /
   postmaster (or empty) and the subject is a typical bounce subject (in
   English, German, French, Italian, Dutch, Spanish, Portuguese, Indonesian,
   the Nordic languages, Polish, Russian, Japanese, Chinese and Korean).
   flufl.bounce's body heuristics only run on mail that already looks like it
   came from a mail system (robot sender, bounce subject, multipart/report,
   ``X-Failed-Recipients``): a customer forwarding a bounce stays ``normal``,
   and ordinary mail is not scanned by dozens of regexes.  ``bounced_message_ids``
   keeps only IDs under ``own_domains`` when any are given.
4. ``loop``: the message's own top-level ``Message-ID`` is under one of
   ``own_domains`` (our own mail came back).  This comes after ``bounce``
   because a bounce produced by our own MTA carries a Message-ID under our
   domain too, and it is still a bounce.  Only the top-level headers count:
   our Message-ID inside a bounce's embedded headers makes it a bounce of our
   mail, not a loop.
5. ``auto_reply``: ``Auto-Submitted: auto-replied``; ``Precedence:
   auto_reply``; or an auto-reply subject ("Automatic reply:", "Automatische
   Antwort:", "Réponse automatique :", "Auto:", "Out of Office", ...) together
   with a header that shows software was involved (``Auto-Submitted`` other
   than ``no``, ``X-Auto-Response-Suppress``, ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: bulk/junk/list``).  A subject alone, or
   ``X-Auto-Response-Suppress`` alone (a request, not a claim), is not enough;
   ``Auto-Submitted: no`` disables the subject heuristic; a ``multipart/report``
   is never an auto-reply.
6. ``auto_generated``: ``Auto-Submitted`` with any value other than ``no``;
   ``Precedence: junk``; ``X-Autoreply`` / ``X-Autorespond`` without an
   auto-reply subject; a read receipt (``report-type=disposition-notification``)
   or a DSN that reports only successful delivery.
7. ``list``: ``List-Id``, ``List-Unsubscribe``, ``List-Post``,
   ``X-Mailing-List``, ``Mailing-List``, ``Precedence: list/bulk``.
8. ``normal``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

from flufl.bounce import all_failures

from maildesk.mail import charsets
from maildesk.mail.attachments import safe_call
from maildesk.patterns import compile_robot_pattern

NORMAL, AUTO_REPLY, AUTO_GENERATED, BOUNCE, COMPLAINT, LIST, LOOP = (
    "normal", "auto_reply", "auto_generated", "bounce", "complaint", "list", "loop")


@dataclass(frozen=True)
class Classification:
    kind: str
    reason: str
    bounced_message_ids: tuple[str, ...] = ()
    failed_recipients: tuple[str, ...] = ()
    permanent: bool = True


DEFAULT_ROBOT_PATTERN = (
    r"(?:(?:mailer-?daemon|mail-daemon|postmaster"
    r"|(?:[^@]*[-_.])?no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply"
    r"|bounces?|[^@]*-bounces)(?:[-+._=][^@]*)?"
    r"|notifications?(?:\+[^@]*)?)"  # notifications@ / notifications+tag@, not notification-team@
    r"(?:@.*)?"
)
_MAIL_SYSTEM = re.compile(r"(?:mailer-?daemon|mail-daemon|postmaster)(?:@.*)?", re.IGNORECASE)

_BOUNCE_SUBJECT = re.compile(
    r"\s*[\[【(（<]?\s*(?:undeliver(?:able|ed)|delivery status notification|failure notice"
    r"|mail delivery (?:failed|failure|system)|returned mail|delayed mail"
    r"|delivery (?:failure|failed|has failed|delayed|notification)"
    r"|warning: could not send|non[- ]?delivery|unzustellbar|nicht zustellbar"
    r"|benachrichtigung zum (?:übermittlungs|zustell)status|übermittlungsfehler"
    r"|non remis|non distribuable|[ée]chec de (?:la )?(?:remise|distribution)"
    r"|notification d.[ée]tat de (?:la )?remise"
    r"|non recapitabile|mancato recapito|onbestelbaar|niet afgeleverd"
    r"|no se (?:pudo|puede) entregar|no entregado|notificaci[óo]n de estado de (?:la )?entrega"
    r"|n[ãa]o (?:foi poss[íi]vel )?entreg|notifica[çc][ãa]o de status de entrega"
    r"|(?:pesan |email |surel )?(?:tidak (?:dapat )?terkirim|gagal (?:ter)?kirim)|pengiriman gagal"
    r"|ej levererbart|kunne ikke leveres|kan ikke leveres|niedostarczalna|nie dostarczono"
    r"|недоставленное сообщение|не доставлено|сообщение не доставлено"
    r"|配信不能|配信エラー|配送エラー|配信失敗|配送失敗|送信できませんでした|エラーメール"
    r"|退信|系统退信|系統退信|无法投递|無法投遞|邮件投递失败|未能送达"
    r"|배달 ?실패|전송 ?실패|반송)", re.IGNORECASE)
_DELAY_SUBJECT = re.compile(r"delay|still being retried|verz[öo]gert|retard", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"\s*\[?\s*(?:auto(?:matic)?[ -]?(?:reply|response)|auto:|automatische antwort"
    r"|abwesenheit|r[ée]ponse automatique|risposta automatica|respuesta autom[aá]tica"
    r"|resposta autom[aá]tica|automatisch antwoord|autosvar|automaattinen vastaus"
    r"|out of (?:the )?office|on vacation|vacation reply)", re.IGNORECASE)
_FORWARD_OR_REPLY = re.compile(r"\s*(?:re|aw|sv|vs|fwd?|wg|tr|rv|i)\s*:", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")
_QUOTED_MSGID = re.compile(r"^[ \t>]*Message-ID:[ \t]*\r?\n?[ \t]*(<[^<>\s@]+@[^<>\s]+>)",
                           re.IGNORECASE | re.MULTILINE)
_DELIVERY_STATUS = ("message/delivery-status", "message/global-delivery-status")
_FEEDBACK_REPORT = ("message/feedback-report",)
_TEXT_LIMIT = 200_000  # bounce notices and quoted headers sit at the top of a part
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "X-Mailing-List", "Mailing-List")
MAX_HOPS = 100
"""More ``Received`` headers than this: the mail is going round in circles (RFC 5321 §6.3)."""
_RECEIVED_LINE = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


def hop_count(raw: bytes) -> int:
    """How many ``Received`` headers the header section of ``raw`` carries."""
    end = _END_OF_HEADERS.search(raw)
    return len(_RECEIVED_LINE.findall(raw, 0, end.start() if end else len(raw)))


def is_robot_address(address: str, pattern: str | None = None) -> bool:
    """True when ``address`` belongs to software (MAILER-DAEMON, noreply, bounces...).

    An empty address (a null envelope sender) is always a robot.  ``pattern``
    (RE2 syntax) replaces the default and must match the whole address,
    case-insensitively.
    """
    address = address.strip().strip("<>").strip()
    if not address:
        return True
    regex = compile_robot_pattern(pattern if pattern is not None else DEFAULT_ROBOT_PATTERN)
    # re2 takes str only as strict UTF-8: a lone surrogate (an undecodable header byte)
    # would raise, so such a character becomes "?" here.
    return regex.fullmatch(address.encode("utf-8", "replace")) is not None


def classify(message: Message, sender: str, *, loop_ids: Iterable[str] = (),
             own_domains: Iterable[str] = ()) -> Classification:
    """Classify ``message``; see the module docstring for the rules and their order."""
    domains = tuple(d.strip().lower() for d in own_domains if d.strip())
    return (_loop_by_header(message, loop_ids)
            or _complaint(message, domains)
            or _bounce(message, sender, domains)
            or _loop_by_message_id(message, domains)
            or _auto_reply(message)
            or _auto_generated(message)
            or _mailing_list(message)
            or Classification(NORMAL, "no automated-mail headers"))


# -- reading headers the same way under every policy ------------------------------------------

def _headers(msg: Message, name: str) -> list[str]:
    """All values of header ``name``, unfolded, with 8-bit bytes (read as the body's charset first,
    as parse does) and RFC 2047 encoded words decoded."""
    wanted = name.lower()
    values = [str(raw) for key, raw in msg.raw_items() if key.lower() == wanted]
    hint = safe_call(charsets.body_charset, msg) if not all(map(str.isascii, values)) else None  # only 8-bit needs it
    return [" ".join(charsets.header_text(value, hint=hint)[0].split()) for value in values]


def _header(msg: Message, name: str) -> str:
    values = _headers(msg, name)
    return values[0] if values else ""


def _token(value: str) -> str:
    """The first token of a structured value: 'auto-replied; owner=x' -> 'auto-replied'."""
    return value.split(";", 1)[0].strip().lower()


def _shown(name: str, value: str) -> str:
    return f"{name}: {value if len(value) <= 80 else value[:77] + '...'}"


# -- loops -------------------------------------------------------------------------------------

def _loop_by_header(msg: Message, loop_ids: Iterable[str]) -> Classification | None:
    ours = {i.strip().strip("<>").lower() for i in loop_ids if i.strip()}
    for value in _headers(msg, "X-Loop"):
        if value.strip("<>").lower() in ours:
            return Classification(LOOP, f"X-Loop: {value} is ours")
    hops = sum(1 for name, _ in msg.raw_items() if name.lower() == "received")
    if hops > MAX_HOPS:
        return Classification(LOOP, f"{hops} Received headers: more than {MAX_HOPS} relays, a mail loop")
    return None


def _loop_by_message_id(msg: Message, domains: tuple[str, ...]) -> Classification | None:
    for msgid in _MSGID.findall(_header(msg, "Message-ID")):
        if _under(msgid, domains):
            return Classification(LOOP, f"Message-ID: {msgid} is ours")
    return None


def _under(msgid: str, domains: tuple[str, ...]) -> bool:
    host = msgid.strip("<>").rpartition("@")[2].lower()
    return any(host == d or host.endswith("." + d) for d in domains)


# -- bounces -----------------------------------------------------------------------------------

def _own_parts(part: Message) -> Iterator[Message]:
    """Walk the MIME tree without descending into attached messages or DSN blocks."""
    yield part
    if part.get_content_maintype() != "message" and part.is_multipart():
        for sub in part.get_payload():
            yield from _own_parts(sub)


def _report_type(msg: Message) -> str:
    for part in _own_parts(msg):
        if part.get_content_type() == "multipart/report":
            return str(part.get_param("report-type", "")).lower()
    return ""


def _dsn_actions(msg: Message) -> set[str]:
    """The Action: values of the per-recipient blocks of every delivery-status part."""
    actions: set[str] = set()
    for part in _own_parts(msg):
        if part.get_content_type() not in _DELIVERY_STATUS:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            actions.update(_token(_header(block, "Action")) for block in payload)
        else:
            text = _text(part)
            actions.update(a.lower() for a in re.findall(r"(?im)^Action:\s*(\w+)", text))
    actions.discard("")
    return actions


def _looks_like_mail_system(msg: Message, sender: str, subject: str) -> bool:
    robot = is_robot_address(sender) and not _FORWARD_OR_REPLY.match(subject)
    return (robot or bool(_BOUNCE_SUBJECT.match(subject)) or bool(_report_type(msg))
            or bool(_headers(msg, "X-Failed-Recipients")) or _has_part(msg, _DELIVERY_STATUS))


def _has_part(msg: Message, types: tuple[str, ...]) -> bool:
    """Whether ``msg`` itself (not a message attached to it) has a part of one of ``types``."""
    return any(part.get_content_type() in types for part in _own_parts(msg))


def _bounce(msg: Message, sender: str, domains: tuple[str, ...]) -> Classification | None:
    subject = _header(msg, "Subject")
    if not _looks_like_mail_system(msg, sender, subject):
        return None
    actions = _dsn_actions(msg)
    report = _report_type(msg) == "delivery-status"
    is_dsn = report or bool(actions)  # a delivery-status part outside a multipart/report still says it
    if is_dsn and actions and not actions & {"failed", "delayed", "error"}:
        return None  # a success DSN (delivered, relayed, expanded): see _auto_generated
    temporary, failed = _failures(msg)
    if is_dsn and (actions or temporary or failed):
        reason = ("DSN (multipart/report; report-type=delivery-status)" if report
                  else f"DSN ({'/'.join(sorted(actions))} in a message/delivery-status part)")
    elif xfailed := _header(msg, "X-Failed-Recipients"):
        reason = _shown("X-Failed-Recipients", xfailed)
    elif temporary or failed:
        reason = f"bounce text names failed recipients: {', '.join(sorted(temporary | failed))}"
    elif _MAIL_SYSTEM.fullmatch(sender.strip()) or not sender.strip():
        if not _BOUNCE_SUBJECT.match(subject):
            return None
        reason = f"From: {sender or '<>'} with bounce subject {subject[:60]!r}"
    else:
        return None
    permanent = ("failed" in actions or "error" in actions or bool(failed)
                 or not ("delayed" in actions or temporary or _DELAY_SUBJECT.search(subject)))
    return Classification(BOUNCE, reason, _bounced_ids(msg, domains),
                          tuple(sorted(temporary | failed)), permanent)


def _failures(msg: Message) -> tuple[set[str], set[str]]:
    """Temporary and permanent failed recipients according to flufl.bounce."""
    try:
        temporary, permanent = all_failures(_slim(msg))
    except Exception:  # its heuristics crash on broken mail (no From:, ...);
        return set(), set()  # flufl.bounce has already logged the traceback
    def decode(addresses: frozenset[bytes]) -> set[str]:
        return {charsets.storable(a.decode("ascii", "replace")).strip().lower() for a in addresses if a.strip()}
    return decode(temporary) - decode(permanent), decode(permanent)


def _slim(part: Message) -> Message:
    """A copy for flufl.bounce, whose regexes read every line of every part: same headers and
    tree, text cut to _TEXT_LIMIT, attachments emptied (8 MB of base64 took seconds)."""
    copy = Message()
    for key, value in part.raw_items():
        copy[key] = "".join(str(value).splitlines())  # unfolded
    payload = part.get_payload()
    if isinstance(payload, list):
        copy.set_payload([_slim(sub) for sub in payload])
    elif isinstance(payload, str) and part.get_content_maintype() in ("text", "message"):
        copy.set_payload(payload[:_TEXT_LIMIT])
    else:
        copy.set_payload("")
    return copy


def _text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return charsets.decode_lenient(data[:_TEXT_LIMIT], part.get_content_charset() or "utf-8")


def _bounced_ids(msg: Message, domains: tuple[str, ...]) -> tuple[str, ...]:
    """Message-IDs of the bounced mail: embedded headers, then In-Reply-To/References, then
    "Message-ID:" lines quoted in the text.  Kept only if under ``domains`` when any are given."""
    found: list[str] = []
    for part in _own_parts(msg):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global", "text/rfc822-headers",
                     "message/global-headers", "message/rfc822-headers"):
            found += _MSGID.findall(_header(_embedded(part), "Message-ID"))
    for name in ("In-Reply-To", "References"):
        found += _MSGID.findall(" ".join(_headers(msg, name)))
    for part in _own_parts(msg):
        if part.get_content_type() == "text/plain":
            found += _QUOTED_MSGID.findall(_text(part))
    unique = dict.fromkeys(found)
    return tuple(i for i in unique if not domains or _under(i, domains))


def _embedded(part: Message) -> Message:
    """The headers of an attached message, whether parsed as a message or left as text."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return payload[0]
    data = part.get_payload(decode=True)
    return BytesHeaderParser().parsebytes(data if isinstance(data, bytes) else b"")


# -- complaints -------------------------------------------------------------------------------

def _complaint(msg: Message, domains: tuple[str, ...]) -> Classification | None:
    """An abuse report in the Abuse Reporting Format (RFC 5965): someone called our mail spam."""
    if _report_type(msg) != "feedback-report" and not _has_part(msg, _FEEDBACK_REPORT):
        return None
    feedback = next((part for part in _own_parts(msg) if part.get_content_type() in _FEEDBACK_REPORT), None)
    kind = _header(_embedded(feedback), "Feedback-Type") if feedback is not None else ""
    reason = f"ARF feedback report (Feedback-Type: {kind or 'none given'})"
    return Classification(COMPLAINT, reason, _bounced_ids(msg, domains))


# -- auto-replies, notifications, lists --------------------------------------------------------

def _auto_reply(msg: Message) -> Classification | None:
    if _report_type(msg):
        return None  # a report (read receipt, success DSN) is not a reply, whatever it claims
    submitted = _header(msg, "Auto-Submitted")
    if _token(submitted) == "auto-replied":
        return Classification(AUTO_REPLY, _shown("Auto-Submitted", submitted))
    precedence = _header(msg, "Precedence")
    if _token(precedence) in ("auto_reply", "auto-reply"):
        return Classification(AUTO_REPLY, _shown("Precedence", precedence))
    subject = _header(msg, "Subject")
    if _token(submitted) == "no" or not _AUTO_REPLY_SUBJECT.match(subject):
        return None
    for name in ("Auto-Submitted", "X-Auto-Response-Suppress", "X-Autoreply", "X-Autorespond"):
        if value := _header(msg, name):
            return Classification(AUTO_REPLY, f"Subject {subject[:60]!r} with {_shown(name, value)}")
    if _token(precedence) in ("bulk", "junk", "list"):
        return Classification(AUTO_REPLY, f"Subject {subject[:60]!r} with Precedence: {precedence}")
    return None


def _auto_generated(msg: Message) -> Classification | None:
    report = _report_type(msg)
    if report in ("disposition-notification", "delivery-status"):
        return Classification(AUTO_GENERATED, f"multipart/report; report-type={report}")
    submitted = _header(msg, "Auto-Submitted")
    if submitted and _token(submitted) != "no":
        return Classification(AUTO_GENERATED, _shown("Auto-Submitted", submitted))
    precedence = _header(msg, "Precedence")
    if _token(precedence) == "junk":
        return Classification(AUTO_GENERATED, _shown("Precedence", precedence))
    for name in ("X-Autoreply", "X-Autorespond"):
        if value := _header(msg, name):
            return Classification(AUTO_GENERATED, _shown(name, value))
    return None


def _mailing_list(msg: Message) -> Classification | None:
    for name in _LIST_HEADERS:
        if value := _header(msg, name):
            return Classification(LIST, _shown(name, value))
    precedence = _header(msg, "Precedence")
    if _token(precedence) in ("list", "bulk"):
        return Classification(LIST, _shown("Precedence", precedence))
    return None
