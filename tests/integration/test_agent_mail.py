"""Agents work from their mail client: a customer's mail through the real listener, the
notification out through a real SMTP sink, the agent's reply (built as a mail client builds it)
back through the listener, and the answer out to the customer; commands, notes, forgeries."""

from __future__ import annotations

import os
import smtplib
import subprocess
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from maildesk import send
from maildesk.desk.agents import agent_reply_address, reply_token
from maildesk.desk.reply_secret import reply_secret
from maildesk.models import Outbox
from maildesk.process import process_queued
from tests.helpers import Desk, make_mail
from tests.integration.conftest import RunningListener, StartListener, need_tool
from tests.integration.test_outbound_smtp import Received, Sink, sink  # noqa: F401 - the sink fixture

pytestmark = pytest.mark.integration

ALICE = "alice@customer.example"
RINA = "rina@example.com"
BUDI = "budi@example.com"


@pytest.fixture
def desk_with_agents(start_listener: StartListener, config_data: dict, sink: Sink) -> RunningListener:
    """The listener with two agents of the support queue and outbound mail to the sink."""
    config_data.update({
        "queues": [{"name": "support", "escalate_to": "level2"}, {"name": "billing"}, {"name": "level2", "level": 2}],
        "agents": [{"address": RINA, "name": "Rina", "queues": ["support"]},
                   {"address": BUDI, "name": "Budi", "queues": ["support", "level2"]}],
    })
    return start_listener(outbound={"transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none"},
                          desk={"note_address": "notes@example.com"})


def smtp_send(listener: RunningListener, raw: bytes, *, mail_from: str, to: list[str]) -> None:
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.sendmail(mail_from, to, raw.replace(b"\n", b"\r\n") if b"\r\n" not in raw else raw)
    process_queued(listener.db, listener.config)
    send.flush(listener.db, listener.config)


def sent_to(sink: Sink, address: str) -> list[Received]:
    return [r for r in sink.received if address in r.rcpt_tos]


def reply_like_a_client(notification: Received, *, sender: str, body: str, to: str | None = None,
                        attachment: tuple[str, bytes] | None = None) -> bytes:
    """What Thunderbird or Outlook sends for "Reply": Re: subject, To the Reply-To, the original quoted."""
    original = notification.message
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = to or original["Reply-To"]
    reply["Subject"] = "Re: " + str(original["Subject"])
    reply["Message-ID"] = make_msgid(domain="agents.example.com")
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = f"{original.get('References', '')} {original['Message-ID']}".strip()
    quoted = "\n".join("> " + line for line in original.get_body(("plain",)).get_content().splitlines())
    reply.set_content(f"{body}\n\nOn Mon, 2 Nov 2026 at 10:00, ACME Support wrote:\n{quoted}\n")
    if attachment is not None:
        reply.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return bytes(reply)


def customer_writes(listener: RunningListener, desk: Desk, sink: Sink, subject: str = "Printer on fire") -> int:
    smtp_send(listener, make_mail(subject=subject, message_id=f"<{subject.replace(' ', '')}@customer.example>"),
              mail_from=ALICE, to=["support@example.com"])
    with listener.db.session() as session:
        return max(session.scalars(select(Outbox.ticket_id)))


def test_customer_mail_agent_answers_customer_gets_it_on_their_thread(
        desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)

    [ack] = sent_to(sink, ALICE)
    assert "[#%d]" % ticket_id in ack.message["Subject"]
    notes = {agent: sent_to(sink, agent) for agent in (RINA, BUDI)}
    assert all(len(got) == 1 for got in notes.values())
    notification = notes[RINA][0]
    assert notification.message["Reply-To"].addresses[0].addr_spec.startswith(f"support+{ticket_id}.")
    assert "my printer is on fire" in notification.message.get_body(("plain",)).get_content()

    sink.received.clear()
    reply = reply_like_a_client(notification, sender=f"Rina <{RINA}>", body="Please switch it off and on again.",
                                attachment=("manual.pdf", b"%PDF-1.4 the printer manual"))
    smtp_send(listener, reply, mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    [answer] = sent_to(sink, ALICE)
    mail = answer.message
    [sender] = mail["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Rina via ACME Support", "support@example.com")
    assert mail["Reply-To"] is None and mail["Cc"] is None
    assert mail["In-Reply-To"] == "<Printeronfire@customer.example>"
    text = mail.get_body(("plain",)).get_content()
    assert "Please switch it off and on again." in text
    assert "> " not in text and "wrote:" not in text
    assert RINA not in answer.content.decode("utf-8", "replace")
    [manual] = list(mail.iter_attachments())
    assert (manual.get_filename(), manual.get_content()) == ("manual.pdf", b"%PDF-1.4 the printer manual")
    ticket = desk.ticket(ticket_id)
    assert ticket["status"] == "pending"
    assert [e["type"] for e in ticket["events"]].count("first_response") == 1
    # Budi, the queue's other agent, gets a short copy; Rina none of her own answer.
    [copy] = sent_to(sink, BUDI)
    assert "Rina answered" in copy.message["Subject"] and sent_to(sink, RINA) == []


def test_commands_a_note_and_a_refused_command(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()

    body = "#priority urgent\n#tag printer\n#assign me\n#status flying\n#note\nCustomer sounds upset; check the toner."
    reply = reply_like_a_client(notification, sender=RINA, body=body)
    smtp_send(listener, reply, mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    ticket = desk.ticket(ticket_id)
    assert (ticket["priority"], ticket["tags"], ticket["assignee"]) == ("urgent", ["printer"], RINA)
    assert ticket["status"] == "new"  # the refused #status changed nothing
    [note] = [m for m in ticket["messages"] if m["direction"] == "in" and m["from"]["address"] == RINA]
    assert note["kind"] == "note" and "check the toner" in note["new_text"]
    assert sent_to(sink, ALICE) == []  # a note never reaches the customer
    [result] = sent_to(sink, RINA)
    assert "flying" in result.message.get_body(("plain",)).get_content()


def test_a_reply_of_commands_only_mails_no_customer(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, BUDI)
    sink.received.clear()
    smtp_send(listener, reply_like_a_client(notification, sender=BUDI, body="#status solved"),
              mail_from=BUDI, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    assert desk.ticket(ticket_id)["status"] == "solved"
    assert sent_to(sink, ALICE) == []


def test_escalate_moves_to_level_2_and_tells_its_agents(
        desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    smtp_send(listener, reply_like_a_client(notification, sender=RINA, body="#escalate"),
              mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    assert desk.ticket(ticket_id)["queue"] == "level2"
    assert len(sent_to(sink, BUDI)) == 1 and sent_to(sink, ALICE) == []


# -- forgeries: each is stored as customer mail and changes nothing -----------------------------


def assert_nothing_changed(desk: Desk, ticket_id: int, sink: Sink) -> None:
    ticket = desk.ticket(ticket_id)
    assert (ticket["status"], ticket["priority"]) == ("new", "normal")
    assert sent_to(sink, ALICE) == []


def test_an_agents_from_without_proof_is_a_customer(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    sink.received.clear()
    forged = make_mail(sender=RINA, subject=f"Re: [#{ticket_id}] Printer on fire", body="#priority urgent\nDone!\n",
                       in_reply_to="<Printeronfire@customer.example>")
    smtp_send(listener, forged, mail_from=RINA, to=["support@example.com"])

    assert_nothing_changed(desk, ticket_id, sink)
    with listener.db.session() as session:
        newest = max(session.scalars(select(Outbox.ticket_id)))
    assert "not_agent" in [e["type"] for e in desk.ticket(newest)["events"]]


def test_a_token_of_another_ticket_proves_nothing(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    first = customer_writes(listener, desk, sink, "First problem")
    second = customer_writes(listener, desk, sink, "Second problem")
    token_of_first = reply_token(reply_secret(listener.db, listener.config), first, RINA)
    sink.received.clear()
    forged = make_mail(sender=RINA, to=agent_reply_address("support@example.com", second, token_of_first),
                       subject="Re: hi", body="#status solved\n")
    smtp_send(listener, forged, mail_from=RINA, to=[agent_reply_address("support@example.com", second, token_of_first)])

    assert desk.ticket(second)["status"] == "new" and desk.ticket(first)["status"] == "new"


def test_another_agents_token_proves_nothing(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [budis] = sent_to(sink, BUDI)
    sink.received.clear()
    # Rina answers with Budi's notification (a forwarded mail): his reply address is not hers.
    reply = reply_like_a_client(budis, sender=RINA, body="#status solved\nAll fixed.")
    smtp_send(listener, reply.replace(budis.message["Message-ID"].encode(), b"<other@example.com>"),
              mail_from=RINA, to=[budis.message["Reply-To"].addresses[0].addr_spec])

    assert_nothing_changed(desk, ticket_id, sink)


def test_dmarc_mode_ignores_a_forged_authentication_results_below_ours(
        start_listener: StartListener, config_data: dict, sink: Sink, desk: Desk) -> None:
    config_data.update({"queues": [{"name": "support"}, {"name": "billing"}],
                        "agents": [{"address": RINA, "name": "Rina", "queues": ["support"]}]})
    listener = start_listener(outbound={"transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none"},
                              desk={"agent_auth": "dmarc", "authserv_id": "mx.example.com"})
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    reply = reply_like_a_client(notification, sender=RINA, body="#status solved")
    ours = b"Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\n"
    forged = b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\n"
    smtp_send(listener, ours + forged + reply, mail_from=RINA,
              to=[notification.message["Reply-To"].addresses[0].addr_spec])
    assert desk.ticket(ticket_id)["status"] == "new"

    passing = b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\n"
    again = reply_like_a_client(notification, sender=RINA, body="#status solved")
    smtp_send(listener, passing + again, mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])
    assert desk.ticket(ticket_id)["status"] == "solved"


def test_an_agent_answers_with_mutt(desk_with_agents: RunningListener, desk: Desk, sink: Sink, tmp_path) -> None:
    """A real mail client, driven unattended: mutt -H sends a reply draft through the listener."""
    mutt = need_tool("mutt", "mutt")
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    original = notification.message
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(f'set smtp_url="smtp://{listener.host}:{listener.port}/"\nset from="Rina <{RINA}>"\n'
                      'set use_from=yes\nset record=""\nset copy=no\nset editor="true"\nset charset="utf-8"\n'
                      'set ssl_starttls=no\nset ssl_force_tls=no\n')  # the test listener offers no TLS
    quoted = "\n".join("> " + line for line in original.get_body(("plain",)).get_content().splitlines())
    draft = tmp_path / "draft"
    draft.write_text(f"To: {original['Reply-To']}\nSubject: Re: {original['Subject']}\n"
                     f"In-Reply-To: {original['Message-ID']}\nReferences: {original['Message-ID']}\n\n"
                     f"The toner was empty; a new one is on its way.\n\n"
                     f"On Mon, Nov 02, 2026 at 10:00:00AM +0000, ACME Support wrote:\n{quoted}\n")
    result = subprocess.run([mutt, "-F", str(muttrc), "-H", str(draft)], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    process_queued(listener.db, listener.config)
    send.flush(listener.db, listener.config)

    [answer] = sent_to(sink, ALICE)
    assert "The toner was empty" in answer.message.get_body(("plain",)).get_content()
    assert desk.ticket(ticket_id)["status"] == "pending"


def test_macros_queue_untag_and_assign_by_name(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    body = "#tag printer\n#tag urgent-fix\n#untag urgent-fix\n#queue billing\n#assign Budi\n\nHello!\n#macro thanks\nRina"
    smtp_send(listener, reply_like_a_client(notification, sender=RINA, body=body),
              mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    ticket = desk.ticket(ticket_id)
    assert (ticket["queue"], ticket["assignee"], ticket["tags"]) == ("billing", BUDI, ["printer"])
    [answer] = sent_to(sink, ALICE)
    text = answer.message.get_body(("plain",)).get_content()
    assert "Hello!" in text and "#macro" not in text and "Alice Customer" in text  # the macro greets by name
    assert text.index("Hello!") < text.index("Alice Customer")


def test_an_unknown_macro_keeps_the_answer_back_and_says_why(
        desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    smtp_send(listener, reply_like_a_client(notification, sender=RINA, body="Hi,\n#macro no_such_thing\n"),
              mail_from=RINA, to=[notification.message["Reply-To"].addresses[0].addr_spec])

    assert sent_to(sink, ALICE) == []
    [result] = sent_to(sink, RINA)
    assert "no_such_thing" in result.message.get_body(("plain",)).get_content()
    [kept] = [m for m in desk.ticket(ticket_id)["messages"] if m["direction"] == "in" and m["kind"] == "note"]
    assert "#macro no_such_thing" in kept["new_text"]


def test_mail_to_the_note_address_is_a_note(desk_with_agents: RunningListener, desk: Desk, sink: Sink) -> None:
    listener = desk_with_agents
    ticket_id = customer_writes(listener, desk, sink)
    [notification] = sent_to(sink, RINA)
    sink.received.clear()
    # Forwarded to the note address, it still answers Rina's notification (In-Reply-To).
    note = reply_like_a_client(notification, sender=RINA, body="Called her; printer model X200.",
                               to="notes@example.com")
    smtp_send(listener, note, mail_from=RINA, to=["notes@example.com"])

    assert sent_to(sink, ALICE) == []
    [kept] = [m for m in desk.ticket(ticket_id)["messages"] if m["direction"] == "in" and m["kind"] == "note"]
    assert kept["new_text"] == "Called her; printer model X200."


def test_a_rules_notify_address_gets_a_copy(start_listener: StartListener, config_data: dict, sink: Sink,
                                            desk: Desk) -> None:
    config_data.update({"queues": [{"name": "support"}, {"name": "billing"}],
                        "agents": [{"address": RINA, "name": "Rina", "queues": ["support"]}],
                        "rules": [{"name": "tell the boss", "when": {"subject": {"contains": "fire"}},
                                   "then": {"notify": ["boss@example.com"]}}]})
    listener = start_listener(outbound={"transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none"})
    customer_writes(listener, desk, sink)

    [copy] = sent_to(sink, "boss@example.com")
    assert copy.message["Reply-To"] is None  # not an agent: replying proves nothing, so no reply address
    assert len(sent_to(sink, RINA)) == 1
