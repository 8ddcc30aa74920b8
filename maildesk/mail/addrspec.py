"""Is this address one a relay can deliver to? The RFC 5321 mailbox syntax, strictly.

The parser (addresses.py) is forgiving on purpose: it recovers a sender
from broken headers so that a ticket knows who wrote. Sending is the other
way round: an address that does not parse cleanly as ``local@domain`` is
never handed to the relay, whatever the header it came from said.

Accepted: a dot-atom or quoted-string local part (RFC 5321 §4.1.2), UTF-8
allowed as in SMTPUTF8 (RFC 6531), and a domain of dot-separated labels or
an address literal (``[192.0.2.1]``, ``[IPv6:...]``).
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
_LITERAL = r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]"
_MAILBOX = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_LABEL}(?:\.{_LABEL})*|{_LITERAL})")
_LONGEST = 320
"""64 characters of local part, an @ and 255 of domain (RFC 5321 §4.5.3.1)."""


def is_mailbox(address: str) -> bool:
    """True when ``address`` is exactly one deliverable ``local@domain``, nothing before or after."""
    return 0 < len(address) <= _LONGEST and _MAILBOX.fullmatch(address) is not None
