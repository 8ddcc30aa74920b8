"""A realistic, reproducible corpus of support mail for benchmarks and tests.

Conversations between customers and a support address: plain text,
multipart/alternative, attachments (a few up to some MB), several charsets,
and replies (about 40% of all mail) that carry In-Reply-To and References
the way mail clients write them; about one customer in five uses a client
that sends In-Reply-To alone, so a reply arriving before its parent's parent
is only linked to it by the parent. ``generate()`` returns every message
with the conversation it belongs to, in a shuffled arrival order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

CHARSETS = [
    ("utf-8", "Grüße aus Köln — the invoice shows € 12,50 twice. 日本語も大丈夫?"),
    ("iso-8859-1", "Bonjour, la facture n'est pas arrivée. Merci d'avance, José."),
    ("windows-1252", "The “premium” plan was charged twice — please refund."),
    ("shift_jis", "お世話になっております。請求書が届いていません。"),
    ("gb2312", "您好，我的账户无法登录，请帮忙处理。"),
    ("koi8-r", "Здравствуйте, не могу войти в личный кабинет."),
    ("iso-8859-2", "Dzień dobry, proszę o pomoc z fakturą."),
]
TOPICS = ["Invoice", "Login problem", "Refund request", "Shipping delay", "Password reset",
          "API error 500", "Cancel subscription", "Wrong address", "Feature question", "Broken download"]


@dataclass(frozen=True)
class CorpusMail:
    conversation: int
    message_id: str
    raw: bytes


def _body(rng: random.Random, charset_text: str) -> str:
    filler = " ".join(rng.choice(["please", "help", "order", "account", "thanks", "urgent", "today"])
                      for _ in range(rng.randint(20, 120)))
    return f"Hello,\n\n{charset_text}\n\n{filler}\n\nBest regards\n"


def _message(rng: random.Random, conv: int, index: int, parent_ids: list[str], when: datetime) -> EmailMessage:
    customer = f"customer{conv}@example.net"
    charset, text = rng.choice(CHARSETS)
    topic = TOPICS[conv % len(TOPICS)]
    mail = EmailMessage()
    mail["From"] = f"Customer {conv} <{customer}>"
    mail["To"] = "support@example.com"
    mail["Subject"] = (f"Re: {topic} #{conv}" if parent_ids else f"{topic} #{conv}")
    mail["Date"] = format_datetime(when)
    mail["Message-ID"] = f"<c{conv}.m{index}.{rng.getrandbits(32):08x}@example.net>"
    if parent_ids:
        mail["In-Reply-To"] = parent_ids[-1]
        if conv % 5:  # every fifth customer's client leaves References out
            mail["References"] = " ".join(parent_ids)
    body = _body(rng, text)
    if parent_ids:
        body += "\nOn Monday, Support wrote:\n> " + "\n> ".join(_body(rng, "").splitlines())
    try:
        body.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    mail.set_content(body, charset=charset)
    kind = rng.random()
    if kind < 0.3:
        mail.add_alternative(f"<html><body><p>{body.replace(chr(10), '<br>')}</p></body></html>", subtype="html")
    elif kind < 0.45:
        size = rng.choice([2_000, 30_000, 200_000]) if rng.random() > 0.03 else rng.randint(1, 3) * 1_000_000
        mail.add_attachment(rng.randbytes(size), maintype="application", subtype="octet-stream",
                            filename=f"scan-{conv}-{index}.pdf")
    return mail


def generate(messages: int = 2000, *, seed: int = 7, reply_share: float = 0.4) -> list[CorpusMail]:
    """About ``messages`` mails, ``reply_share`` of them replies, shuffled."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    conversations = max(1, round(messages * (1 - reply_share)))
    threads: list[list[str]] = [[] for _ in range(conversations)]
    corpus: list[CorpusMail] = []
    for n in range(messages):
        conv = n if n < conversations else rng.randrange(conversations)
        parents = threads[conv]
        mail = _message(rng, conv, len(parents), list(parents), start + timedelta(minutes=n))
        message_id = str(mail["Message-ID"])
        parents.append(message_id)
        corpus.append(CorpusMail(conv, message_id, bytes(mail)))
    rng.shuffle(corpus)
    return corpus
