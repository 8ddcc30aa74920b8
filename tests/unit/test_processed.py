"""Metrics from what processing did: processed, deduplicated, tickets created,
automated mail by class (with or without a ticket), outgoing mail written by
kind and status, and the time from acceptance to ticket."""

from __future__ import annotations

from maildesk.metrics import Metrics
from maildesk.process import Outcome
from maildesk.processed import Observed, observe, outbox_high_water
from tests.helpers import Desk, make_mail


def test_outcomes_become_counts(desk: Desk) -> None:
    desk.ingest(make_mail(subject="Before the daemon started"), notify=True)  # its ack is not ours to count
    seen = Observed(outbox_high_water(desk.db))
    outcomes: list[Outcome] = [
        desk.ingest(make_mail(message_id="<first@x.example>"), notify=True),
        desk.ingest(make_mail(message_id="<first@x.example>", subject="Same mail again")),
        desk.ingest(make_mail(message_id="<alert@x.example>", subject="Disk full",
                              headers={"Auto-Submitted": "auto-generated"}), notify=True),
        desk.ingest(make_mail(message_id="<ooo@x.example>", subject="Out of office",
                              headers={"Auto-Submitted": "auto-replied"}), notify=True),
        Outcome(999, "done", 1, detail="already handled"),  # another daemon did it
    ]
    metrics = Metrics()

    observe(desk.db, outcomes, metrics, seen)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("maildesk_messages_processed_total") == 4
    assert value("maildesk_messages_deduplicated_total") == 1
    assert value("maildesk_tickets_created_total") == 2
    assert value("maildesk_messages_failed_total") == 0
    assert value("maildesk_automated_mail_total", **{"class": "auto_generated"}) == 1
    assert value("maildesk_automated_mail_total", **{"class": "auto_reply"}) == 1
    assert value("maildesk_outbox_mail_total", status="queued", kind="ack") == 1
    assert value("maildesk_accepted_to_ticket_seconds_count") == 2
