"""HTML body -> readable plain text, for mail that has no text/plain part.

inscriptis does the rendering (tables, lists, block layout); if it fails or
finds no text, a crude tag strip takes over. Links are kept, written as
``label <url>`` instead of inscriptis' Markdown-like ``[label](url)``.
"""

from __future__ import annotations

import re
import textwrap
from html import unescape

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

__all__ = ["html_to_text"]


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: no tags, no style or script, links kept."""
    try:
        text = get_text(html, ParserConfig(display_links=True))
    except Exception:
        text = ""
    if not text.strip():
        text = unescape(re.sub(r"(?is)<(style|script)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", " ", html))
    text = re.sub(r"\[([^\]]*)\]\(([^)\s]*)\)", _link, text)
    return textwrap.dedent("\n".join(line.rstrip() for line in text.splitlines()))


def _link(match: re.Match) -> str:
    label, url = match.group(1).strip(), match.group(2)
    if not label or label == url or url.removeprefix("mailto:") == label:
        return label or url
    return f"{label} <{url}>"
