"""Find the new part of a reply: drop quoted history, reply headers and signatures."""

from __future__ import annotations

import re

REPLY_ABOVE_MARKER = "##- Please type your reply above this line -##"

_I = re.IGNORECASE

# "On <date>, <name> wrote:" in the languages our customers write in.
_ATTRIBUTION = [
    re.compile(r"^\s*On\b.{0,300}\bwrote\s*:\s*$", _I),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,300}:\s*$", _I),
    re.compile(r"^\s*Le\b.{0,300}\ba\s+[ée]crit\s*:\s*$", _I),
    re.compile(r"^\s*El\b.{0,300}\bescribi[óo]\s*:\s*$", _I),
    re.compile(r"^\s*Pada\b.{0,300}\bmenulis\s*:\s*$", _I),
    re.compile(r"^\s*Op\b.{0,300}\bschreef\b.{0,300}:\s*$", _I),
    re.compile(r"^\s*Em\b.{0,300}\bescreveu\s*:\s*$", _I),
    re.compile(r"^\s*Il\b.{0,300}\bha\s+scritto\s*:\s*$", _I),
]
_ATTRIBUTION_LEAD = re.compile(r"^\s*(On|Am|Le|El|Pada|Op|Em|Il)\b", _I)

_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Originalnachricht|"
    r"Message d'origine|Mensaje original|Pesan Asli|Oorspronkelijk bericht|"
    r"Messaggio originale|Mensagem original)\s*-{2,}\s*$",
    _I,
)
_RULE = re.compile(r"^\s*_{20,}\s*$")
_FIELD = r"^\s*\*?\s*(?:{})\s*:\s*\*?"
_FROM = re.compile(_FIELD.format(r"From|Von|De|Dari|Van|Da|Från|Fra"), _I)
_SENT = re.compile(
    _FIELD.format(
        r"Sent|Date|Gesendet|Datum|Envoyé|Date d'envoi|Enviado|Fecha|Dikirim|Tanggal|Verzonden|Inviato"
    ),
    _I,
)
_TO_SUBJECT = re.compile(
    _FIELD.format(
        r"To|An|À|A|Para|Kepada|Aan|Subject|Betreff|Objet|Asunto|Perihal|Onderwerp|Oggetto|Cc"
    ),
    _I,
)
_SIGNATURE = re.compile(r"^--\s*$")
_MOBILE_TAIL = re.compile(
    r"^\s*(Sent from (my|Mail|Yahoo|Outlook)|Get Outlook for|Von meinem .{1,40} gesendet|"
    r"Gesendet von|Envoyé de mon|Enviado desde mi|Dikirim dari)\b.{0,80}$",
    _I,
)
_QUOTED = re.compile(r"^\s*>")
_BLANK_RUN = re.compile(r"\n\n\n+")
"""Three or more line breaks; spelled with a literal prefix, which the regex engine finds by a fast
scan (``\n{3,}`` is tried at every position: a third of a second on a 24 MB line)."""


def collapse_blank_lines(text: str) -> str:
    """``text`` with runs of blank lines cut to one."""
    return _BLANK_RUN.sub("\n\n", text)


def new_text(text: str) -> str:
    """The new part of a reply, stripped; the full text if nothing would be left."""
    full = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    lines = full.split("\n")
    marker = next((i for i, line in enumerate(lines) if REPLY_ABOVE_MARKER in line), None)
    if marker is not None:
        lines = lines[:marker]
    lines = _cut_history(lines)
    lines = _drop_quoted(lines)
    signature = next((i for i, line in enumerate(lines) if _SIGNATURE.match(line)), None)
    if signature is not None:
        lines = lines[:signature]
    while lines and (not lines[-1].strip() or _MOBILE_TAIL.match(lines[-1])):
        lines.pop()
    result = collapse_blank_lines("\n".join(line.rstrip() for line in lines)).strip()
    return result or full


def _cut_history(lines: list[str]) -> list[str]:
    """Cut at the first reply header whose history follows; drop interleaved headers."""
    kept: list[str] = []
    i = 0
    while i < len(lines):
        span = _attribution_span(lines, i)
        if span:
            if _interleaved(lines, i + span):
                i += span
                continue
            return kept
        if _ORIGINAL.match(lines[i]) or _outlook_block(lines, i):
            return kept
        if _RULE.match(lines[i]) and _outlook_block(lines, _next_nonblank(lines, i + 1)):
            return kept
        kept.append(lines[i])
        i += 1
    return kept


def _drop_quoted(lines: list[str]) -> list[str]:
    """Remove ">" lines; a removed block leaves one blank line between new lines."""
    kept: list[str] = []
    for line in lines:
        if not _QUOTED.match(line):
            kept.append(line)
        elif kept and kept[-1] != "":
            kept.append("")
    return kept


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines (1-3) form an attribution line starting at ``i``; 0 if none."""
    if not _ATTRIBUTION_LEAD.match(lines[i]):
        return 0
    for span in (1, 2, 3):
        if i + span > len(lines) or (span > 1 and not lines[i + span - 1].strip()):
            return 0
        joined = " ".join(line.strip() for line in lines[i : i + span])
        if any(pattern.match(joined) for pattern in _ATTRIBUTION):
            return span
    return 0


def _interleaved(lines: list[str], start: int) -> bool:
    """True when a quoted block follows and a new, unquoted line comes after it."""
    i = _next_nonblank(lines, start)
    if i >= len(lines) or not _QUOTED.match(lines[i]):
        return False
    while i < len(lines) and (not lines[i].strip() or _QUOTED.match(lines[i])):
        i += 1
    if i >= len(lines):
        return False
    return not (_SIGNATURE.match(lines[i]) or _MOBILE_TAIL.match(lines[i]))


def _outlook_block(lines: list[str], i: int) -> bool:
    """A "From: ... Sent: ... To: ... Subject:" header block starts at ``i``."""
    if i >= len(lines) or not _FROM.match(lines[i]):
        return False
    following = lines[i + 1 : i + 7]
    has_sent = any(_SENT.match(line) for line in following)
    has_other = any(_TO_SUBJECT.match(line) for line in following)
    return has_sent and has_other


def _next_nonblank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i
