"""Rules applied by process(): every ticket routed to a queue, priority and agent, each decision
in the ticket's history with the rule's name, on SQLite and PostgreSQL."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from maildesk.config import parse_config
from maildesk.errors import ConfigError
from maildesk.models import Outbox
from tests.helpers import Desk, make_mail
from tests.unit.desk.test_rules import ISSUE_EXAMPLE

EXAMPLE_RULES = tomllib.loads(ISSUE_EXAMPLE)["rules"]
QUEUES = [{"name": "support", "level": 1, "escalate_to": "level2"}, {"name": "billing"},
          {"name": "level2", "level": 2}]
AGENTS = [{"address": "rina@example.com", "name": "Rina", "queues": ["support", "level2"]},
          {"address": "budi@example.com", "name": "Budi", "queues": ["level2"]}]


def routed_desk(desk: Desk, config_data: dict, rules: list[dict], **more: object) -> Desk:
    config = parse_config({**config_data, "queues": QUEUES, "agents": AGENTS, "rules": rules, **more})
    return Desk(desk.db, config)


def events_of(desk: Desk, ticket_id: int, *types: str) -> list[dict]:
    return [e for e in desk.ticket(ticket_id)["events"] if e["type"] in types]


def outbox_kinds(desk: Desk) -> list[tuple[str, str]]:
    """The mail queued for customers (the agents' notifications left out)."""
    with desk.db.session() as session:
        return [(row.kind, row.status) for row in session.scalars(select(Outbox).order_by(Outbox.id))
                if row.kind != "notification"]


def test_no_rules_keep_the_addresss_queue_and_normal_priority(desk: Desk) -> None:
    ticket = desk.ticket(desk.ingest(make_mail(to="billing@example.com")).ticket_id)
    assert (ticket["queue"], ticket["priority"], ticket["assignee"], ticket["tags"]) == ("billing", "normal", None, [])
    assert events_of(desk, ticket["id"], "rules") == []


def test_the_example_rules_route_a_vip(desk: Desk, config_data: dict) -> None:
    desk = routed_desk(desk, config_data, EXAMPLE_RULES)
    ticket = desk.ticket(desk.ingest(make_mail(sender="ceo@bigcorp.example")).ticket_id)

    assert (ticket["queue"], ticket["priority"], ticket["tags"]) == ("support", "high", ["vip"])
    [priority] = events_of(desk, ticket["id"], "priority")
    assert priority["reason"] == 'rule "vip customers"' and priority["detail"]["new"] == "high"
    [tagged] = events_of(desk, ticket["id"], "tagged")
    assert tagged["detail"]["tags"] == ["vip"]
    [rules] = events_of(desk, ticket["id"], "rules")
    assert rules["detail"]["matched"] == ["vip customers"]
    assert rules["detail"]["routing"] == {"queue": "support", "priority": "high", "assignee": None, "tags": ["vip"],
                                          "sla": None, "acknowledge": True, "spam": False}


def test_an_outage_goes_to_level_2_to_the_least_loaded_agent_and_stops(desk: Desk, config_data: dict) -> None:
    desk = routed_desk(desk, config_data, EXAMPLE_RULES)
    first = desk.ingest(make_mail(sender="a@bigcorp.example", subject="Site OUTAGE")).ticket_id
    second = desk.ingest(make_mail(sender="b@bigcorp.example", subject="Help", body="Our VPN is down again.\n"))

    one, two = desk.ticket(first), desk.ticket(second.ticket_id)
    assert (one["queue"], one["priority"], one["assignee"]) == ("level2", "urgent", "rina@example.com")
    assert (two["queue"], two["assignee"]) == ("level2", "budi@example.com")  # rina has one open already
    assert "vip" in one["tags"]  # the earlier rule matched too; stop only ends what comes after
    [routed] = events_of(desk, first, "routed")
    assert (routed["detail"]["old"], routed["detail"]["new"]) == ("support", "level2")
    [assigned] = events_of(desk, first, "assigned")
    assert assigned["reason"] == 'rule "outage to level 2"' and assigned["detail"]["strategy"] == "least_open"


def test_a_newsletter_is_stored_closed_as_spam_and_never_acknowledged(desk: Desk, config_data: dict) -> None:
    desk = routed_desk(desk, config_data, EXAMPLE_RULES)
    newsletter = make_mail(sender="news@shop.example", headers={"List-Unsubscribe": "<mailto:u@shop.example>",
                                                                "List-Id": "<news.shop.example>"})
    outcome = desk.ingest(newsletter, notify=True)

    ticket = desk.ticket(outcome.ticket_id)
    assert ticket["status"] == "closed"
    assert [e["type"] for e in events_of(desk, ticket["id"], "spam", "status")] == ["spam", "status"]
    assert outbox_kinds(desk) == []
    again = desk.ingest(make_mail(sender="news@shop.example", in_reply_to=ticket["messages"][0]["message_id"]))
    assert again.ticket_id == ticket["id"] and desk.ticket(ticket["id"])["status"] == "closed"


def test_round_robin_takes_turns_in_config_order(desk: Desk, config_data: dict) -> None:
    rules = [{"name": "everything to level 2", "when": {}, "then": {"queue": "level2", "assign": "round_robin"}}]
    desk = routed_desk(desk, config_data, rules)
    assignees = [desk.ticket(desk.ingest(make_mail(sender=f"c{n}@x.example")).ticket_id)["assignee"]
                 for n in range(3)]
    assert assignees == ["rina@example.com", "budi@example.com", "rina@example.com"]


def test_a_queue_without_agents_leaves_the_ticket_unassigned_and_says_why(desk: Desk, config_data: dict) -> None:
    desk = routed_desk(desk, config_data, [{"name": "billing", "when": {}, "then": {"queue": "billing",
                                                                                   "assign": "least_open"}}])
    ticket_id = desk.ingest(make_mail()).ticket_id
    assert desk.ticket(ticket_id)["assignee"] is None
    [event] = events_of(desk, ticket_id, "not_assigned")
    assert "no agents" in event["detail"]["why"]


def test_acknowledge_false_and_another_template(desk: Desk, config_data: dict, tmp_path: Path) -> None:
    (tmp_path / "tpl" / "ack_vip").mkdir(parents=True)
    for part, text in (("subject.txt", "Priority line: {{ ticket.subject }}"), ("body.txt", "VIP {{ tag }}\n"),
                       ("body.html", "<p>VIP {{ tag }}</p>")):
        (tmp_path / "tpl" / "ack_vip" / part).write_text(text)
    rules = [{"name": "quiet", "when": {"subject": {"starts_with": "quiet"}}, "then": {"acknowledge": False}},
             {"name": "vip ack", "when": {"from_domain": {"equals": "bigcorp.example"}},
              "then": {"acknowledge": "ack_vip"}}]
    outbound = {**config_data["outbound"], "templates": str(tmp_path / "tpl")}
    desk = routed_desk(desk, config_data, rules, outbound=outbound)

    quiet = desk.ingest(make_mail(subject="quiet please"), notify=True)
    assert outbox_kinds(desk) == []
    assert [e["reason"] for e in events_of(desk, quiet.ticket_id, "not_acknowledged")] == ['rule "quiet"']
    desk.ingest(make_mail(sender="ceo@bigcorp.example", subject="Hello"), notify=True)
    with desk.db.session() as session:
        [ack] = session.scalars(select(Outbox).where(Outbox.kind == "ack"))
        assert ack.kind == "ack" and ack.subject.endswith("Priority line: Hello") and b"VIP [#2]" in ack.raw


def test_followup_rules_run_on_replies_only(desk: Desk, config_data: dict) -> None:
    rules = [{"name": "angry reply", "on": "followup", "when": {"body": {"contains": "still broken"}},
              "then": {"priority": "urgent", "tags": ["escalated"]}},
             {"name": "new only", "when": {"body": {"contains": "still broken"}}, "then": {"tags": ["new-only"]}}]
    desk = routed_desk(desk, config_data, rules)
    first = desk.ingest(make_mail(message_id="<f1@customer.example>", body="It is still broken.\n"))
    assert desk.ticket(first.ticket_id)["tags"] == ["new-only"]
    desk.ingest(make_mail(in_reply_to="<f1@customer.example>", body="It is still broken!\n"))

    ticket = desk.ticket(first.ticket_id)
    assert ticket["priority"] == "urgent" and ticket["tags"] == ["new-only", "escalated"]


def test_a_rule_that_fails_is_skipped_and_the_rest_still_route(
        desk: Desk, config_data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [{"name": "breaks", "when": {"previous_tickets": {"at_least": 1}}, "then": {"queue": "billing"}},
             {"name": "works", "when": {}, "then": {"priority": "low"}}]
    desk = routed_desk(desk, config_data, rules)
    from maildesk.desk import routing

    def broken_count(*args: object, **kwargs: object) -> object:
        return "not a number"

    monkeypatch.setattr(routing, "previous_tickets", broken_count)
    ticket = desk.ticket(desk.ingest(make_mail()).ticket_id)
    assert (ticket["queue"], ticket["priority"]) == ("support", "low")
    [rules_event] = events_of(desk, ticket["id"], "rules")
    assert rules_event["detail"]["failed"] == ["breaks"]


def test_previous_tickets_and_sla_and_status(desk: Desk, config_data: dict) -> None:
    rules = [{"name": "regular", "when": {"previous_tickets": {"at_least": 2}},
              "then": {"sla": "gold", "status": "open"}}]
    desk = routed_desk(desk, config_data, rules, sla_policies=[{"name": "gold", "first_response": "1h"}])
    ids = [desk.ingest(make_mail(subject=f"n{n}")).ticket_id for n in range(3)]
    tickets = [desk.ticket(i) for i in ids]
    assert [t["status"] for t in tickets] == ["new", "new", "open"]
    [sla] = events_of(desk, ids[2], "sla_policy")
    assert sla["detail"]["new"] == "gold"


@pytest.mark.parametrize(("data", "message"), [
    ({"rules": [{"name": "r", "when": {}, "then": {"queue": "levl2"}}]},
     "rules[0] \"r\": then.queue: unknown queue 'levl2'"),
    ({"rules": [{"name": "r", "when": {}, "then": {"assign": "nobody@example.com"}}]},
     "rules[0] \"r\": then.assign: unknown agent 'nobody@example.com'"),
    ({"rules": [{"name": "r", "when": {}, "then": {"acknowledge": "no_such_template"}}]},
     "rules[0] \"r\": then.acknowledge: unknown template kind 'no_such_template'"),
    ({"agents": [{"address": "x@example.com", "queues": ["nope"]}]}, "agents[0].queues: unknown queue 'nope'"),
    ({"queues": [{"name": "support", "escalate_to": "l9"}]}, "queues.support.escalate_to: unknown queue 'l9'"),
    ({"queues": [{"name": "other"}]}, "addresses[0].queue: unknown queue 'support'"),
    ({"rules": [{"name": "r", "when": {}, "then": {"sla": "platinum"}}]},
     "rules[0] \"r\": then.sla: unknown SLA policy 'platinum'"),
    ({"queues": [{"name": "support", "sla": "platinum"}, {"name": "billing"}, {"name": "level2"}]},
     "queues.support.sla: unknown SLA policy 'platinum'"),
])
def test_a_reference_to_something_undefined_names_the_key(config_data: dict, data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({**config_data, "queues": QUEUES, "agents": AGENTS, **data})
    assert message in str(error.value)
