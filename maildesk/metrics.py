"""The daemon's Prometheus metrics, on a registry of its own (``/metrics``).

Counters count what this process did since it started; gauges (spool and
outbox depth, IMAP poll lag) are set from the periodic look at the database
(see maildesk.health). The stages report here through plain calls from
service.py, the listener and the sender; process() knows nothing of it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.received = Counter("maildesk_messages_received", "Messages accepted (committed to the spool), "
                                "by source", ["source"], registry=registry)
        self.received_duplicates = Counter("maildesk_messages_received_duplicate",
                                           "Of those, deliveries of bytes already in the spool", ["source"],
                                           registry=registry)
        self.processed = Counter("maildesk_messages_processed", "Spooled messages processed (state done)",
                                 registry=registry)
        self.failed = Counter("maildesk_messages_failed", "Spooled messages whose processing failed",
                              registry=registry)
        self.deduplicated = Counter("maildesk_messages_deduplicated",
                                    "Messages whose Message-ID was already stored", registry=registry)
        self.automated = Counter("maildesk_automated_mail", "Automated mail processed, by class", ["class"],
                                 registry=registry)
        self.tickets_created = Counter("maildesk_tickets_created", "Tickets opened by incoming mail",
                                       registry=registry)
        self.outbox = Counter("maildesk_outbox_mail", "Outgoing mail by what happened to it "
                              "(queued, suppressed when written; sent, deferred, failed when tried) and kind",
                              ["status", "kind"], registry=registry)
        self.processing_seconds = Histogram("maildesk_processing_seconds", "Time to process one message",
                                            buckets=_SECONDS, registry=registry)
        self.accepted_to_ticket_seconds = Histogram(
            "maildesk_accepted_to_ticket_seconds", "Time from a message's acceptance to its ticket",
            buckets=_LATENCY, registry=registry)
        self.imap_poll_lag = Gauge("maildesk_imap_seconds_since_poll",
                                   "Seconds since the mailbox's last successful poll", ["mailbox"],
                                   registry=registry)
        self.smtp_sessions = Counter("maildesk_smtp_sessions", "SMTP/LMTP connections", registry=registry)
        self.smtp_replies = Counter("maildesk_smtp_replies", "SMTP/LMTP replies sent, by code", ["code"],
                                    registry=registry)
        self.spool_queued = Gauge("maildesk_spool_queued", "Messages waiting in the spool", registry=registry)
        self.spool_failed = Gauge("maildesk_spool_failed", "Messages whose processing failed", registry=registry)
        self.spool_oldest_seconds = Gauge("maildesk_spool_oldest_queued_seconds",
                                          "Age of the oldest message waiting", registry=registry)
        self.outbox_queued = Gauge("maildesk_outbox_queued", "Outgoing mail waiting", registry=registry)
        self.outbox_failed = Gauge("maildesk_outbox_failed", "Outgoing mail that failed", registry=registry)
        self.outbox_oldest_seconds = Gauge("maildesk_outbox_oldest_queued_seconds",
                                           "Age of the oldest outgoing mail waiting", registry=registry)

    def smtp_session(self) -> None:
        self.smtp_sessions.inc()

    def smtp_reply(self, code: str) -> None:
        self.smtp_replies.labels(code=code).inc()

    def message_received(self, source: str, *, duplicate: bool, count: int = 1) -> None:
        self.received.labels(source=source).inc(count)
        if duplicate:
            self.received_duplicates.labels(source=source).inc(count)

    def text(self) -> bytes:
        return generate_latest(self.registry)
