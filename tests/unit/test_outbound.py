"""The desk's outbound decisions: who is acknowledged, who never is, rate limits,
bounces of our own mail, and the outbox drained through the file transport."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from maildesk import send, spool
from maildesk.cli import main
from maildesk.config import Config
from maildesk.desk import tickets
from maildesk.desk.threader import strip_subject_tag
from maildesk.mail.parse import parse
from maildesk.models import Outbox, Ticket
from maildesk.process import process_many
from tests.helpers import Desk, make_mail

AUTO = Path(__file__).parents[1] / "data" / "auto"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def outbox(desk: Desk) -> list[Outbox]:
    with desk.db.session() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def event_types(desk: Desk, ticket_id: int) -> list[str]:
    return [e["type"] for e in desk.ticket(ticket_id)["events"]]


def test_a_new_ticket_is_acknowledged_once_and_the_reply_threads_back(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<q1@customer.example>"), notify=True, now=T0)
    [ack] = outbox(desk)

    assert (ack.kind, ack.status, ack.to, ack.ticket_id) == ("ack", "queued", ["alice@customer.example"], first.ticket_id)
    assert ack.subject == f"[#{first.ticket_id}] We have received your request: Printer on fire"
    ticket = desk.ticket(first.ticket_id)
    out = [m for m in ticket["messages"] if m["direction"] == "out"]
    assert [(m["kind"], m["message_id"], m["in_reply_to"]) for m in out] == [
        ("auto", ack.message_id, ["<q1@customer.example>"])]
    assert ack.message_id.endswith("@desk.example.com>")
    assert "mail_queued" in event_types(desk, first.ticket_id)

    # The customer answers our acknowledgement (their client keeps only our id): same ticket, no new ack.
    reply = desk.ingest(make_mail(subject="Re: " + ack.subject, in_reply_to=ack.message_id,
                                  references=ack.message_id), notify=True, now=T0 + timedelta(minutes=5))
    assert reply.ticket_id == first.ticket_id and not reply.created
    assert len(outbox(desk)) == 1


def test_no_acknowledgement_when_notify_is_off(desk: Desk) -> None:
    desk.ingest(make_mail(), notify=False)
    assert outbox(desk) == []


def test_reply_to_is_where_the_acknowledgement_goes(desk: Desk) -> None:
    desk.ingest(make_mail(headers={"Reply-To": "Alice Private <alice@home.example>"}), notify=True, now=T0)
    assert [r.to for r in outbox(desk)] == [["alice@home.example"]]


def test_the_queue_language_is_used(desk: Desk, config: Config) -> None:
    config.addresses[1].language = "id-ID"  # billing@
    desk.ingest(make_mail(to="billing@example.com"), notify=True, now=T0)
    [ack] = outbox(desk)
    mail = email.message_from_bytes(ack.raw, policy=default)
    assert "Permintaan Anda telah kami terima" in str(mail["Subject"])
    assert str(mail["From"]) == "ACME Billing <billing@example.com>"


@pytest.mark.parametrize("sender", ["noreply@shop.example", "MAILER-DAEMON@mx.example", "no-reply@x.example"])
def test_robot_addresses_are_never_answered_and_the_ticket_says_why(desk: Desk, sender: str) -> None:
    outcome = desk.ingest(make_mail(sender=sender), notify=True, now=T0)
    [row] = outbox(desk)
    assert row.status == "suppressed" and "robot address" in row.reason
    events = desk.ticket(outcome.ticket_id)["events"]
    assert any(e["type"] == "mail_suppressed" and "robot address" in e["reason"] for e in events)
    assert [m["direction"] for m in desk.ticket(outcome.ticket_id)["messages"]] == ["in"]


def test_the_robot_pattern_is_configurable(desk: Desk, config: Config) -> None:
    config.outbound.robot_pattern = r"robot-.*@.*"
    desk.ingest(make_mail(sender="robot-7@factory.example"), notify=True, now=T0)
    desk.ingest(make_mail(sender="noreply@shop.example"), notify=True, now=T0)  # the default list no longer applies
    assert [r.status for r in outbox(desk)] == ["suppressed", "queued"]


def test_the_corpus_of_automated_mail_gets_no_answer(desk: Desk) -> None:
    answered = []
    for path in sorted(AUTO.glob("*.eml")):
        before = len(outbox(desk))
        desk.ingest(path.read_bytes(), notify=True, now=T0)
        if any(r.status == "queued" for r in outbox(desk)[before:]):
            answered.append(path.name)
    humans = sorted(p.name for p in AUTO.glob("human_*.eml"))
    assert len(humans) >= 5 and len(list(AUTO.glob("*.eml"))) >= 20
    assert answered == humans


def test_auto_responders_ping_ponging_are_cut_off_by_the_rate_limit(desk: Desk, config: Config, tmp_path: Path) -> None:
    """A robot that slipped through classification answers every mail with a fresh mail
    (no In-Reply-To, our tag dropped), so each of its answers opens a new ticket."""
    config.outbound.directory = tmp_path / "sent"
    now = T0
    desk.ingest(make_mail(sender="bot@robots.example", subject="Hello"), notify=True, now=now)
    rounds = 0
    while rounds < 50:
        results = send.flush(desk.db, config, clock=lambda: now)
        if not results:
            break
        rounds += 1
        for result in results:
            raw = (tmp_path / "sent" / f"{result.outbox_id:08d}.eml").read_bytes()
            ours = email.message_from_bytes(raw, policy=default)
            now += timedelta(minutes=1)
            desk.ingest(make_mail(sender="bot@robots.example", subject="Re: " + strip_subject_tag(ours["Subject"])),
                        notify=True, now=now)

    rows = outbox(desk)
    assert config.limits.per_recipient == 5
    assert sum(r.status == "sent" for r in rows) == 5 and rounds == 5
    assert [r.status for r in rows] == ["sent"] * 5 + ["suppressed"]
    assert "rate limit: 5 automatic mails to bot@robots.example" in rows[-1].reason
    last = desk.ticket(rows[-1].ticket_id)
    assert any(e["type"] == "mail_suppressed" and "rate limit" in e["reason"] for e in last["events"])

    # An hour later the window has moved on: a real new request is acknowledged again.
    desk.ingest(make_mail(sender="bot@robots.example", subject="New"), notify=True, now=now + timedelta(hours=1))
    assert outbox(desk)[-1].status == "queued"


@pytest.mark.parametrize("parse_ahead", [True, False], ids=["parsed ahead", "one by one"])
def test_the_per_recipient_limit_holds_inside_one_batch(desk: Desk, config: Config, parse_ahead: bool) -> None:
    """A bulk import counts each recipient's automatic mail once for the batch, then as it queues."""
    desk.ingest(make_mail(sender="bot@robots.example", subject="Earlier"), notify=True, now=T0)
    mails = [make_mail(sender="bot@robots.example", subject=f"New {n}") for n in range(6)]
    mails.append(make_mail(sender="Carol <carol@customer.example>", headers={"Reply-To": "bot@robots.example"}))
    mails.append(make_mail(sender="dave@customer.example"))
    ids = [spool.put(desk.db, raw, source="test").id for raw in mails]
    parsed = {i: parse(raw) for i, raw in zip(ids, mails, strict=True)} if parse_ahead else None
    process_many(desk.db, config, ids, clock=lambda: T0 + timedelta(minutes=1), parsed=parsed)

    acks = [(row.recipient, row.status) for row in outbox(desk)[1:]]
    assert acks == [("bot@robots.example", "queued")] * 4 + [("bot@robots.example", "suppressed")] * 3 + [
        ("dave@customer.example", "queued")]


def test_the_per_ticket_limit(desk: Desk, config: Config) -> None:
    from maildesk.desk import outbound

    config.limits.per_ticket = 2
    outcome = desk.ingest(make_mail(), notify=True, now=T0)
    with desk.db.session() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert ticket is not None
        for minute in (1, 2, 3):
            outbound.enqueue(session, config, ticket, "update", to=[tickets.Person("alice@customer.example")],
                             now=T0 + timedelta(minutes=minute), change=("open", "pending"))
    assert [r.status for r in outbox(desk)] == ["queued", "queued", "suppressed", "suppressed"]
    assert "on this ticket in the last 10 minutes (limit 2)" in outbox(desk)[-1].reason


def dsn(bounced_message_id: str, recipient: str, action: str = "failed", status: str = "5.1.1") -> bytes:
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>
To: support@example.com
Subject: Undelivered Mail Returned to Sender
Date: Mon, 2 Nov 2026 10:10:00 +0000
Message-ID: <dsn-{status}-{bounced_message_id.strip('<>')}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--B
Content-Type: text/rfc822-headers

From: ACME Support <support@example.com>
To: {recipient}
Subject: [#1] We have received your request
Message-ID: {bounced_message_id}

--B--
""".replace("\n", "\r\n").encode()


def test_a_bounce_of_our_mail_is_a_delivery_failure_on_its_ticket_and_never_a_ticket(desk: Desk, config: Config) -> None:
    outcome = desk.ingest(make_mail(), notify=True, now=T0)
    send.flush(desk.db, config, clock=lambda: T0)
    [ack] = outbox(desk)
    assert ack.status == "sent"
    with desk.db.session() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert ticket is not None
        tickets.set_status(session, ticket, "solved", actor="agent@example.com", now=T0, reason="fixed")

    bounce = desk.ingest(dsn(ack.message_id, "alice@customer.example"), notify=True, now=T0 + timedelta(minutes=10))

    assert bounce.ticket_id == outcome.ticket_id and not bounce.created
    assert desk.ticket_count() == 1
    ticket = desk.ticket(outcome.ticket_id)
    assert ticket["status"] == "solved"  # a bounce never reopens
    [failure] = [e for e in ticket["events"] if e["type"] == "delivery_failed"]
    assert ack.message_id in failure["reason"] and "alice@customer.example" in failure["reason"]
    assert failure["detail"]["permanent"] is True
    assert [r.status for r in outbox(desk)] == ["failed"]  # and nobody answers the bounce
    assert "bounced" in (outbox(desk)[0].last_error or "")


def test_a_delay_notice_is_recorded_as_a_delay_and_the_mail_stays_sent(desk: Desk, config: Config) -> None:
    outcome = desk.ingest(make_mail(), notify=True, now=T0)
    send.flush(desk.db, config, clock=lambda: T0)
    [ack] = outbox(desk)

    desk.ingest(dsn(ack.message_id, "alice@customer.example", action="delayed", status="4.4.1"),
                notify=True, now=T0 + timedelta(hours=4))

    types = event_types(desk, outcome.ticket_id)
    assert "delivery_delayed" in types and "delivery_failed" not in types
    assert [r.status for r in outbox(desk)] == ["sent"]
    assert desk.ticket_count() == 1 and len(outbox(desk)) == 1


def test_a_bounce_of_mail_we_never_sent_opens_nothing(desk: Desk) -> None:
    outcome = desk.ingest(dsn("<unknown-1@desk.example.com>", "x@y.example"), notify=True, now=T0)
    assert outcome.ticket_id is None and desk.ticket_count() == 0 and outbox(desk) == []


def test_file_transport_trouble_is_retried_with_backoff_then_given_up(desk: Desk, config: Config, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config.outbound.directory = blocker / "outbox"
    config.outbound.max_attempts = 3
    outcome = desk.ingest(make_mail(), notify=True, now=T0)

    [first] = send.flush(desk.db, config, clock=lambda: T0)
    assert first.status == "queued" and "cannot write" in first.error
    assert outbox(desk)[0].next_attempt_at == T0 + timedelta(seconds=60)
    assert send.flush(desk.db, config, clock=lambda: T0 + timedelta(seconds=59)) == []
    [second] = send.flush(desk.db, config, clock=lambda: T0 + timedelta(seconds=60))
    assert outbox(desk)[0].next_attempt_at == T0 + timedelta(seconds=60 + 120)
    [third] = send.flush(desk.db, config, clock=lambda: T0 + timedelta(seconds=180))
    assert (second.status, third.status) == ("queued", "failed")
    assert send.flush(desk.db, config, clock=lambda: T0 + timedelta(days=1)) == []
    [row] = outbox(desk)
    assert row.attempts == 3 and row.reason.startswith("gave up after 3 attempts")
    assert any(e["type"] == "delivery_failed" for e in desk.ticket(outcome.ticket_id)["events"])


def test_backoff_doubles_up_to_its_cap(config: Config) -> None:
    waits = [send.backoff(n, config.outbound).total_seconds() for n in range(1, 9)]
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_cli_outbox_list_flush_and_retry(desk: Desk, config_data: dict, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    config_file = tmp_path / "maildesk.toml"

    def write_config(directory: Path) -> None:
        lines = [f'[database]\nurl = "{config_data["database"]["url"]}"\n', '[desk]\ndomain = "desk.example.com"\n',
                 '[[addresses]]\naddress = "support@example.com"\n',
                 f'[outbound]\ndirectory = "{directory}"\nmax_attempts = 1\n']
        config_file.write_text("\n".join(lines))

    desk.ingest(make_mail(), notify=True)
    write_config(blocked / "outbox")
    runner = CliRunner()
    flushed = runner.invoke(main, ["-c", str(config_file), "outbox", "flush"])
    assert flushed.exit_code == 0 and "sent 0, deferred 0, failed 1" in flushed.output

    listed = runner.invoke(main, ["-c", str(config_file), "outbox", "list", "--json"])
    [item] = json.loads(listed.output)["items"]
    assert set(item) >= {"id", "ticket_id", "kind", "to", "subject", "status", "attempts", "last_error", "message_id"}
    assert (item["kind"], item["status"], item["attempts"]) == ("ack", "failed", 1)

    write_config(tmp_path / "outbox")
    retried = runner.invoke(main, ["-c", str(config_file), "outbox", "retry", str(item["id"])])
    assert retried.exit_code == 0 and f"outbox {item['id']}: sent" in retried.output
    assert (tmp_path / "outbox" / f"{item['id']:08d}.eml").is_file()
    again = runner.invoke(main, ["-c", str(config_file), "outbox", "retry", str(item["id"])])
    assert again.exit_code == 1 and "already sent" in again.output
    table = runner.invoke(main, ["-c", str(config_file), "outbox", "list"])
    assert table.exit_code == 0 and "ack" in table.output and "sent" in table.output


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"outbound": {"robot_pattern": "(unclosed"}}, "outbound.robot_pattern: not a valid regular expression"),
        ({"outbound": {"tls": "yes"}}, "outbound.tls: Input should be 'ssl', 'starttls' or 'none'"),
        ({"outbound": {"max_attempts": 0}}, "outbound.max_attempts: Input should be greater than or equal to 1"),
        ({"limits": {"per_recipent": 3}}, "limits.per_recipent: unknown key"),
        ({"addresses": [{"address": "a@example.com", "language": "Bahasa"}]}, "addresses.0.language: String should match"),
    ],
)
def test_outbound_config_mistakes_name_the_key(data: dict, message: str) -> None:
    from maildesk.config import parse_config
    from maildesk.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert message in str(caught.value)


def test_status_changes_the_customer_should_know_about(desk: Desk, config: Config) -> None:
    from maildesk.desk import outbound

    outcome = desk.ingest(make_mail(message_id="<q1@customer.example>"), notify=False, now=T0)
    with desk.db.session() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert ticket is not None
        made = [outbound.status_changed(session, config, ticket, old=old, new=new, now=T0 + timedelta(minutes=n),
                                        note="Replaced the toner." if new == "solved" else "")
                for n, (old, new) in enumerate([("new", "open"), ("open", "open"), ("open", "solved"),
                                                ("solved", "closed")])]
    assert [m.kind if m else None for m in made] == ["update", None, "solved", None]
    solved = email.message_from_bytes(outbox(desk)[-1].raw, policy=default)
    assert solved["Subject"] == f"[#{outcome.ticket_id}] Your request has been solved: Printer on fire"
    assert solved["In-Reply-To"] == "<q1@customer.example>" and solved["Auto-Submitted"] == "auto-generated"
    assert "Replaced the toner." in solved.get_body(("plain",)).get_content()


def test_every_mail_on_a_ticket_stays_in_the_customers_outlook_conversation(desk: Desk, config: Config) -> None:
    import base64

    from maildesk.desk import outbound

    customers = base64.b64encode(bytes(range(22))).decode()
    outcome = desk.ingest(make_mail(headers={"Thread-Index": customers}), notify=True, now=T0)
    with desk.db.session() as session:
        ticket = session.get(Ticket, outcome.ticket_id)
        assert ticket is not None
        outbound.status_changed(session, config, ticket, old="new", new="solved", now=T0 + timedelta(days=1))
    ack, solved = (email.message_from_bytes(row.raw, policy=default) for row in outbox(desk))
    for mail in (ack, solved):
        index = base64.b64decode(str(mail["Thread-Index"]))
        assert index[:22] == bytes(range(22)) and len(index) == 27  # a child of the customer's
