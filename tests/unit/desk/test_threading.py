"""Threading: every message becomes a ticket or joins the one it answers.

These run against SQLite, and PostgreSQL too when MAILDESK_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from maildesk.desk.threader import find_subject_tag, strip_subject_tag, subject_tag
from maildesk.models import Message, Ticket
from tests.helpers import BASE_DATE, Desk, make_mail


def test_new_mail_opens_a_ticket_with_requester_queue_and_history(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(subject="Printer on fire", message_id="<a1@customer.example>"))

    assert outcome.created and outcome.state == "done"
    ticket = desk.ticket(outcome.ticket_id)
    assert ticket["subject"] == "Printer on fire"
    assert ticket["status"] == "new"
    assert ticket["queue"] == "support"
    assert ticket["requester"] == "alice@customer.example"
    assert [p["role"] for p in ticket["participants"]] == ["requester"]
    assert [e["type"] for e in ticket["events"]] == ["created", "message"]
    [message] = ticket["messages"]
    assert message["message_id"] == "<a1@customer.example>"
    assert (message["direction"], message["kind"]) == ("in", "customer")


def test_envelope_recipient_decides_the_queue_even_when_to_says_otherwise(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(to="someone@elsewhere.example"), rcpt_to=["billing@example.com"])
    assert desk.ticket(outcome.ticket_id)["queue"] == "billing"


def test_reply_by_in_reply_to_joins_the_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<p1@customer.example>"))
    reply = desk.ingest(make_mail(subject="Re: Printer on fire", in_reply_to="<p1@customer.example>"))

    assert not reply.created and reply.ticket_id == first.ticket_id
    assert desk.ticket_count() == 1
    assert len(desk.ticket(first.ticket_id)["messages"]) == 2


def test_reply_by_references_only_joins_the_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<r1@customer.example>"))
    reply = desk.ingest(
        make_mail(subject="other subject", references="<unknown@x.example> <r1@customer.example>")
    )
    assert reply.ticket_id == first.ticket_id


def test_reply_to_our_outbound_mail_joins_the_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail())
    with desk.db.session() as session:
        session.add(
            Message(
                ticket_id=first.ticket_id, direction="out", kind="auto",
                message_id="<ack-1@desk.example.com>", from_address="support@example.com",
            )
        )
        from maildesk.desk.threader import remember_keys

        remember_keys(session, first.ticket_id, ["<ack-1@desk.example.com>"])

    reply = desk.ingest(make_mail(subject="Re: [#1] Printer", in_reply_to="<ack-1@desk.example.com>"))
    assert reply.ticket_id == first.ticket_id


def test_subject_tag_from_a_participant_joins_the_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail())
    tag = subject_tag(first.ticket_id)
    reply = desk.ingest(make_mail(subject=f"Re: {tag} Printer on fire"))
    assert reply.ticket_id == first.ticket_id


def test_subject_tag_with_configured_prefix(config_data: dict) -> None:
    assert find_subject_tag("Re: [ACME #42] help", "ACME") == 42
    assert find_subject_tag("Re: [#42] help", "ACME") is None
    assert find_subject_tag("Re: [acme#42] help", "ACME") == 42
    assert strip_subject_tag("Re: [ACME #42] help", "ACME") == "Re: help"


def test_stranger_with_a_copied_subject_tag_gets_a_new_linked_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail())
    tag = subject_tag(first.ticket_id)
    stranger = desk.ingest(make_mail(sender="mallory@evil.example", subject=f"Re: {tag} Printer on fire"))

    assert stranger.created and stranger.ticket_id != first.ticket_id
    new = desk.ticket(stranger.ticket_id)
    assert new["linked_ticket_id"] == first.ticket_id
    assert "not a participant" in new["events"][0]["reason"]
    old = desk.ticket(first.ticket_id)
    assert len(old["messages"]) == 1
    assert old["events"][-1]["type"] == "linked"


def test_cc_participant_may_use_the_subject_tag(desk: Desk) -> None:
    first = desk.ingest(make_mail(cc="Bob <bob@customer.example>"))
    reply = desk.ingest(make_mail(sender="bob@customer.example", subject=f"Re: {subject_tag(first.ticket_id)} x"))
    assert reply.ticket_id == first.ticket_id


def test_tag_of_a_ticket_that_does_not_exist_opens_a_plain_new_ticket(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(subject="Re: [#999] old thing"))
    assert outcome.created
    assert desk.ticket(outcome.ticket_id)["linked_ticket_id"] is None


def test_two_replies_to_a_missing_parent_join_each_other_and_the_parent_joins_them(desk: Desk) -> None:
    reply_one = desk.ingest(make_mail(subject="Re: Q", in_reply_to="<parent@c.example>",
                                      references="<parent@c.example>"))
    reply_two = desk.ingest(make_mail(subject="Re: Q", in_reply_to="<parent@c.example>"))
    parent = desk.ingest(make_mail(subject="Q", message_id="<parent@c.example>"))

    assert reply_one.ticket_id == reply_two.ticket_id == parent.ticket_id
    assert desk.ticket_count() == 1


def test_a_strangers_reply_to_a_missing_parent_opens_a_linked_ticket(desk: Desk) -> None:
    """Knowing an id someone else named is no proof of being in the conversation."""
    reply_one = desk.ingest(make_mail(subject="Re: Q", in_reply_to="<parent@c.example>"))
    reply_two = desk.ingest(make_mail(subject="Re: Q", sender="carol@c.example", in_reply_to="<parent@c.example>"))
    parent = desk.ingest(make_mail(subject="Q", message_id="<parent@c.example>"))

    assert reply_one.ticket_id == parent.ticket_id != reply_two.ticket_id
    assert desk.ticket(reply_two.ticket_id)["linked_ticket_id"] == reply_one.ticket_id


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_a_conversation_is_one_ticket_in_any_arrival_order(desk: Desk, order: tuple[int, ...]) -> None:
    ids = [f"<c{i}@customer.example>" for i in range(4)]
    mails = [make_mail(message_id=ids[0], subject="Q")]
    for i in range(1, 4):
        mails.append(make_mail(message_id=ids[i], subject="Re: Q", in_reply_to=ids[i - 1],
                               references=" ".join(ids[:i])))
    for index in order:
        desk.ingest(mails[index])
    assert desk.ticket_count() == 1
    assert desk.message_count() == 4


def live_tickets(desk: Desk) -> list[dict]:
    """Every ticket not merged into another."""
    with desk.db.session() as session:
        ids = session.scalars(select(Ticket.id).order_by(Ticket.id)).all()
    return [t for t in map(desk.ticket, ids) if t["status"] != "merged"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_a_conversation_whose_client_sends_only_in_reply_to_is_one_ticket_in_any_order(
    desk: Desk, order: tuple[int, ...]
) -> None:
    ids = [f"<irt{i}@customer.example>" for i in range(4)]
    mails = [make_mail(message_id=ids[0], subject="Q")]
    mails += [make_mail(message_id=ids[i], subject="Re: Q", in_reply_to=ids[i - 1]) for i in range(1, 4)]
    for index in order:
        desk.ingest(mails[index])

    [ticket] = live_tickets(desk)
    assert sorted(m["message_id"] for m in ticket["messages"]) == sorted(ids)


def test_a_merged_ticket_points_at_the_one_it_went_into_and_its_tag_still_works(desk: Desk) -> None:
    late = desk.ingest(make_mail(message_id="<m3@c.example>", in_reply_to="<m2@c.example>", subject="Re: Q"))
    first = desk.ingest(make_mail(message_id="<m1@c.example>", subject="Q"))
    link = desk.ingest(make_mail(message_id="<m2@c.example>", in_reply_to="<m1@c.example>", subject="Re: Q"))

    assert link.ticket_id == late.ticket_id < first.ticket_id
    merged = desk.ticket(first.ticket_id)
    assert (merged["status"], merged["linked_ticket_id"], merged["messages"]) == ("merged", late.ticket_id, [])
    assert merged["events"][-1]["type"] == "merged"
    assert "merged" in [e["type"] for e in desk.ticket(late.ticket_id)["events"]]
    tagged = desk.ingest(make_mail(subject=f"Re: [#{first.ticket_id}] Q"))
    assert tagged.ticket_id == late.ticket_id


def test_a_stranger_naming_two_tickets_ids_does_not_merge_them(desk: Desk) -> None:
    alice = desk.ingest(make_mail(message_id="<a3@c.example>", in_reply_to="<a2@c.example>"))
    bob = desk.ingest(make_mail(sender="bob@other.example", message_id="<b1@other.example>"))
    # Mallory knows an id of each: her replies open tickets of her own, linked to theirs...
    for known in ("<a3@c.example>", "<b1@other.example>"):
        reply = desk.ingest(make_mail(sender="mallory@evil.example", in_reply_to=known))
        assert reply.created
    # ...and a mail that claims alice's missing id and answers bob's mail joins neither.
    bridge = desk.ingest(make_mail(sender="mallory@evil.example", message_id="<a2@c.example>",
                                   in_reply_to="<b1@other.example>"))

    assert bridge.created and desk.ticket(bridge.ticket_id)["linked_ticket_id"] == bob.ticket_id
    for victim in (alice, bob):
        ticket = desk.ticket(victim.ticket_id)
        assert ticket["status"] == "new"
        assert "mallory@evil.example" not in {p["address"] for p in ticket["participants"]}
        assert {m["from"]["address"] for m in ticket["messages"]} != {"mallory@evil.example"}
        assert "merged" not in [e["type"] for e in ticket["events"]]


def test_reply_to_a_solved_ticket_reopens_it(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<s1@customer.example>"))
    with desk.db.session() as session:
        session.execute(update(Ticket).values(status="solved", solved_at=BASE_DATE))
    desk.ingest(make_mail(in_reply_to="<s1@customer.example>"))

    ticket = desk.ticket(first.ticket_id)
    assert ticket["status"] == "open"
    assert ticket["events"][-2]["type"] == "reopened"


def test_reply_to_a_ticket_closed_long_ago_opens_a_new_linked_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<old@customer.example>"))
    closed = BASE_DATE - timedelta(days=400)
    with desk.db.session() as session:
        session.execute(update(Ticket).values(status="closed", closed_at=closed))
    reply = desk.ingest(make_mail(in_reply_to="<old@customer.example>"), now=BASE_DATE)

    assert reply.created and reply.ticket_id != first.ticket_id
    new = desk.ticket(reply.ticket_id)
    assert new["linked_ticket_id"] == first.ticket_id
    assert "reopen window" in new["events"][0]["reason"]
    assert desk.ticket(first.ticket_id)["status"] == "closed"


def test_further_replies_to_a_ticket_closed_long_ago_join_the_one_new_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<old2@customer.example>"))
    with desk.db.session() as session:
        session.execute(update(Ticket).values(status="closed", closed_at=BASE_DATE - timedelta(days=400)))
    # Two answers to the old conversation, neither naming the other (sent from two devices).
    one = desk.ingest(make_mail(in_reply_to="<old2@customer.example>", body="One more thing"), now=BASE_DATE)
    two = desk.ingest(make_mail(in_reply_to="<old2@customer.example>", body="And another"), now=BASE_DATE)
    stranger = desk.ingest(make_mail(sender="mallory@elsewhere.example", in_reply_to="<old2@customer.example>"),
                           now=BASE_DATE)

    assert one.created and two.ticket_id == one.ticket_id != first.ticket_id
    assert desk.ticket(one.ticket_id)["events"][-1]["reason"] == "customer mail joined by follow-up"
    # Someone not on the follow-up ticket does not land in it.
    assert stranger.created and stranger.ticket_id not in (first.ticket_id, one.ticket_id)


def test_reply_to_a_recently_closed_ticket_reopens_it(desk: Desk) -> None:
    first = desk.ingest(make_mail(message_id="<recent@customer.example>"))
    with desk.db.session() as session:
        session.execute(update(Ticket).values(status="closed", closed_at=BASE_DATE - timedelta(days=2)))
    reply = desk.ingest(make_mail(in_reply_to="<recent@customer.example>"), now=BASE_DATE)
    assert reply.ticket_id == first.ticket_id
    assert desk.ticket(first.ticket_id)["status"] == "open"
