"""The rule engine: loading and validating [[rules]], evaluating them, explaining, assigning."""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from maildesk.desk.conditions import AUTOMATED_CLASSES, RuleInput
from maildesk.desk.rules import (
    STATUSES,
    Actions,
    Outcome,
    RuleError,
    RuleSet,
    check_references,
    choose_agent,
    compile_rules,
    evaluate,
    least_open,
    round_robin,
    rules_from_toml,
)

ISSUE_EXAMPLE = r'''
[[rules]]
name = "vip customers"
when = { from_domain = { in = ["bigcorp.example", "gov.example"] } }
then = { priority = "high", tags = ["vip"] }

[[rules]]
name = "outage to level 2"
when.any = [ { subject = { contains = "outage" } }, { body = { matches = "(?i)\\b(down|offline)\\b" } } ]
then = { queue = "level2", priority = "urgent", assign = "least_open" }
stop = true

[[rules]]
name = "newsletters"
when = { "header.List-Unsubscribe" = { exists = true }, automated = { in = ["list", "auto_generated"] } }
then = { spam = true }
'''

SATURDAY_NIGHT = datetime(2026, 12, 5, 22, 30)  # a Saturday


def mail(**fields: Any) -> RuleInput:
    """A plain customer mail opening a new ticket; ``fields`` override."""
    values: dict[str, Any] = dict(
        address="support@desk.example", sender="alice@customer.example", to=("support@desk.example",),
        cc=(), subject="Printer on fire", body="It burns.", text="It burns.\n> earlier", headers=(),
        attachment_names=(), attachment_types=(), automated="normal", sender_is_agent=False,
        previous_tickets=0, arrived=SATURDAY_NIGHT, followup=False,
    )
    values.update(fields)
    return RuleInput(**values)


def rules_of(*whens_and_thens: tuple[dict[str, Any], dict[str, Any]], **common: Any) -> RuleSet:
    return compile_rules([
        {"name": f"rule {n}", "when": when, "then": then, **common}
        for n, (when, then) in enumerate(whens_and_thens)
    ])


def holds(when: dict[str, Any], mail_input: RuleInput) -> bool:
    """Whether ``when`` matches, checking that the explanation agrees with the fast path."""
    rule = compile_rules([{"name": "r", "when": when}])[0]
    fast = rule.when.test(mail_input)
    explained, facts = rule.when.explain(mail_input)
    assert explained == fast, facts
    return fast


def because(when: dict[str, Any], mail_input: RuleInput) -> str:
    return evaluate(compile_rules([{"name": "r", "when": when}]), mail_input).trace[0].because


def error_of(data: Any) -> str:
    with pytest.raises(RuleError) as caught:
        compile_rules(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the issue's example, exactly as written -------------------------------------------------

def test_the_issue_example_loads_and_routes_a_vip_outage() -> None:
    rules = rules_from_toml(ISSUE_EXAMPLE)
    result = evaluate(rules, mail(sender="Boss@BigCorp.example", subject="Outage at plant 3",
                                  headers=(("List-Unsubscribe", "<mailto:u@x>"),), automated="list"))

    assert [(step.name, step.status) for step in result.trace] == [
        ("vip customers", "matched"), ("outage to level 2", "matched"), ("newsletters", "stopped")]
    assert result.trace[0].because == 'from_domain "BigCorp.example" in ["bigcorp.example", "gov.example"]'
    assert result.trace[1].because == 'subject contains "outage"'
    assert result.trace[2].because == 'not run: rules[1] "outage to level 2" matched and has stop = true'
    assert result.outcome == Outcome(queue="level2", priority="urgent", assign_strategy="least_open", tags=("vip",))
    assert [step.name for step in result.matched] == ["vip customers", "outage to level 2"]


def test_the_issue_example_on_a_body_that_says_down_and_on_a_newsletter() -> None:
    rules = rules_from_toml(ISSUE_EXAMPLE)
    down = evaluate(rules, mail(body="Our VPN is DOWN since 9."))
    assert down.trace[1].because == r'body matches "(?i)\\b(down|offline)\\b"'
    assert down.outcome.queue == "level2"

    newsletter = evaluate(rules, mail(headers=(("list-unsubscribe", "<https://x.example/u>"),),
                                      automated="list", subject="Our December offers"))
    assert newsletter.outcome == Outcome(spam=True)
    assert newsletter.trace[2].because == (
        'header.List-Unsubscribe exists and automated "list" in ["list", "auto_generated"]')


def test_the_issue_example_says_why_nothing_matched() -> None:
    result = evaluate(rules_from_toml(ISSUE_EXAMPLE), mail(sender="bob@small.example", body="downtime"))

    assert result.outcome.is_empty
    assert [step.because for step in result.trace] == [
        'from_domain "small.example" not in ["bigcorp.example", "gov.example"]',
        r'subject does not contain "outage" and body does not match "(?i)\\b(down|offline)\\b"',
        "header.List-Unsubscribe does not exist",
    ]
    assert not any(step.matched for step in result.trace)


# --- fields -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "fields", "expected"), [
    ({"address": {"equals": "Support@Desk.example"}}, {}, True),
    ({"address": {"starts_with": "billing@"}}, {}, False),
    ({"from": {"equals": "ALICE@customer.example"}}, {}, True),
    ({"from_domain": {"equals": "customer.example"}}, {}, True),
    ({"from_domain": {"equals": "example"}}, {}, False),
    ({"from_domain": {"exists": False}}, {"sender": ""}, True),
    ({"to": {"equals": "sales@desk.example"}}, {"to": ("support@desk.example", "Sales@desk.example")}, True),
    ({"cc": {"ends_with": "@partner.example"}}, {"cc": ("x@partner.example",)}, True),
    ({"cc": {"exists": True}}, {}, False),
    ({"subject": {"contains": "FIRE"}}, {}, True),
    ({"body": {"contains": "earlier"}}, {}, False),
    ({"text": {"contains": "earlier"}}, {}, True),
    ({"header.X-Priority": {"equals": "1"}}, {"headers": (("x-priority", "1"),)}, True),
    ({"header": {"X-Priority": {"equals": "1"}}}, {"headers": (("X-PRIORITY", "1"),)}, True),
    ({"has_attachment": {"equals": True}}, {"attachment_names": ("a.pdf",)}, True),
    ({"has_attachment": {"equals": True}}, {}, False),
    ({"attachment_name": {"ends_with": ".PDF"}}, {"attachment_names": ("x.txt", "invoice.pdf")}, True),
    ({"attachment_type": {"starts_with": "image/"}}, {"attachment_types": ("application/pdf",)}, False),
    ({"automated": {"equals": "auto_reply"}}, {"automated": "auto_reply"}, True),
    ({"sender_is_agent": {"equals": True}}, {"sender_is_agent": True}, True),
    ({"previous_tickets": {"at_least": 3}}, {"previous_tickets": 3}, True),
    ({"previous_tickets": {"equals": 0}}, {"previous_tickets": 1}, False),
    ({"weekday": {"in": ["sat", "Sunday"]}}, {}, True),
    ({"weekday": {"at_most": 5}}, {}, False),
    ({"weekday": {"equals": "mon"}}, {"arrived": datetime(2026, 11, 30, 9)}, True),
    ({"hour": {"at_least": 18}}, {}, True),
    ({"hour": {"at_most": 17}}, {}, False),
])
def test_each_field(when: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    assert holds(when, mail(**fields)) is expected


# --- operators ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("operators", "expected"), [
    ({"equals": "printer on fire"}, True),
    ({"equals": "printer"}, False),
    ({"contains": "ON FI"}, True),
    ({"starts_with": "printer"}, True),
    ({"starts_with": "fire"}, False),
    ({"ends_with": "Fire"}, True),
    ({"matches": "^printer\\s+on"}, True),
    ({"matches": "(?-i)^printer"}, False),
    ({"in": ["Printer On Fire", "other"]}, True),
    ({"in": ["printer"]}, False),
    ({"exists": True}, True),
    ({"exists": False}, False),
    ({"not_equals": "printer on fire"}, False),
    ({"not_contains": "toner"}, True),
    ({"not_starts_with": "printer"}, False),
    ({"not_ends_with": "water"}, True),
    ({"not_matches": "fire$"}, False),
    ({"not_in": ["a", "b"]}, True),
    ({"not_exists": True}, False),
    ({"contains": "printer", "not_contains": "toner"}, True),
    ({"contains": "printer", "not_contains": "fire"}, False),
])
def test_each_text_operator_ignores_case(operators: dict[str, Any], expected: bool) -> None:
    assert holds({"subject": operators}, mail(subject="Printer on FIRE")) is expected


@pytest.mark.parametrize(("operators", "expected"), [
    ({"equals": 2}, True), ({"not_equals": 2}, False), ({"in": [1, 2]}, True), ({"not_in": [1, 2]}, False),
    ({"at_least": 2}, True), ({"at_least": 3}, False), ({"at_most": 2}, True), ({"at_most": 1}, False),
    ({"not_at_least": 3}, True), ({"not_at_most": 1}, True),
])
def test_each_number_operator(operators: dict[str, Any], expected: bool) -> None:
    assert holds({"previous_tickets": operators}, mail(previous_tickets=2)) is expected


@pytest.mark.parametrize(("operators", "expected"), [
    ({"equals": "b@x.example"}, True),
    ({"contains": "@x."}, True),
    ({"in": ["c@x.example", "a@y.example"]}, True),
    ({"matches": "^b@"}, True),
    ({"ends_with": "@z.example"}, False),
    ({"not_ends_with": "@z.example"}, True),   # no element ends so
    ({"not_contains": "@y."}, False),          # one element contains it
    ({"not_in": ["q@q.example"]}, True),
    ({"exists": True}, True),
])
def test_a_list_field_matches_when_any_element_does_and_not_when_none_does(
        operators: dict[str, Any], expected: bool) -> None:
    assert holds({"to": operators}, mail(to=("a@y.example", "B@x.example"))) is expected


def test_an_empty_list_matches_only_negated_operators() -> None:
    assert holds({"cc": {"contains": "a"}}, mail()) is False
    assert holds({"cc": {"not_contains": "a"}}, mail()) is True
    assert holds({"header.X-Spam": {"not_exists": True}}, mail()) is True


def test_a_header_field_sees_every_occurrence_of_the_header() -> None:
    received = (("Received", "from a.example"), ("Subject", "x"), ("received", "from relay.b.example"))
    assert holds({"header.RECEIVED": {"contains": "relay.b"}}, mail(headers=received))
    assert because({"header.received": {"contains": "relay.b"}}, mail(headers=received)) == (
        'header.received "from relay.b.example" contains "relay.b"')
    assert because({"header.received": {"contains": "zzz"}}, mail(headers=received)) == (
        'none of header.received ["from a.example", "from relay.b.example"] contains "zzz"')


def test_matches_uses_re2_on_unicode_text() -> None:
    assert holds({"subject": {"matches": r"^störung\b"}}, mail(subject="STÖRUNG im Netz"))
    assert holds({"attachment_name": {"matches": r"\.(exe|js)$"}}, mail(attachment_names=("a.pdf", "b.JS")))


def test_matches_on_a_megabyte_finishes_quickly() -> None:
    """A bound against catastrophic backtracking (RE2 is linear), not a benchmark."""
    rules = rules_of(({"body": {"matches": "(a+)+$"}}, {"tags": ["x"]}),
                     ({"text": {"matches": "(x|x)*y"}}, {"tags": ["y"]}))
    started = time.monotonic()
    result = evaluate(rules, mail(body="a" * 1_000_000 + "!", text="x" * 1_000_000))
    assert time.monotonic() - started < 2
    assert result.outcome.tags == ()


# --- explanations -------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "fields", "expected"), [
    ({"subject": {"not_contains": "outage"}}, {}, 'subject does not contain "outage"'),
    ({"subject": {"not_contains": "fire"}}, {}, 'subject contains "fire"'),
    ({"from": {"ends_with": "@x.example"}}, {}, 'from "alice@customer.example" does not end with "@x.example"'),
    ({"to": {"exists": True}}, {"to": ()}, "to is empty"),
    ({"to": {"equals": "a@b.example"}}, {"to": ()}, "to is empty"),
    ({"cc": {"in": ["z@z.example"]}}, {"cc": ("a@b.example", "c@d.example")},
     'none of cc ["a@b.example", "c@d.example"] in ["z@z.example"]'),
    ({"has_attachment": {"equals": False}}, {"attachment_names": ("a.pdf",)}, "has_attachment is true"),
    ({"previous_tickets": {"at_least": 3}}, {"previous_tickets": 1}, "previous_tickets 1 is below 3"),
    ({"hour": {"at_most": 8}}, {}, "hour 22 is above 8"),
    ({"weekday": {"in": ["sat", "sun"]}}, {}, 'weekday "sat" in ["sat", "sun"]'),
    ({}, {}, "no conditions (every mail)"),
    ({"not": {"subject": {"contains": "fire"}}}, {}, 'subject contains "fire"'),
    ({"all": [{"subject": {"contains": "fire"}}, {"any": [{"cc": {"exists": True}}, {"hour": {"equals": 22}}]}]},
     {}, 'subject contains "fire" and hour 22 equals 22'),
    ({"any": [{"cc": {"exists": True}}, {"not": {"hour": {"equals": 22}}}]},
     {}, "cc is empty and hour 22 equals 22"),
])
def test_because_states_the_facts_that_decided(when: dict[str, Any], fields: dict[str, Any], expected: str) -> None:
    assert because(when, mail(**fields)) == expected


def test_a_long_value_is_shortened_in_the_explanation() -> None:
    long_sender = "a" * 100 + "@x.example"
    assert because({"from": {"equals": "b@x.example"}}, mail(sender=long_sender)) == (
        f'from "{"a" * 60}…" does not equal "b@x.example"')


# --- combinators --------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "expected"), [
    ({"subject": {"contains": "printer"}, "hour": {"equals": 22}}, True),
    ({"subject": {"contains": "printer"}, "hour": {"equals": 9}}, False),
    ({"all": [{"subject": {"contains": "printer"}}, {"hour": {"equals": 22}}]}, True),
    ({"all": [{"subject": {"contains": "printer"}}, {"hour": {"equals": 9}}]}, False),
    ({"any": [{"subject": {"contains": "toner"}}, {"hour": {"equals": 22}}]}, True),
    ({"any": [{"subject": {"contains": "toner"}}, {"hour": {"equals": 9}}]}, False),
    ({"not": {"subject": {"contains": "toner"}}}, True),
    ({"not": {"subject": {"contains": "printer"}, "hour": {"equals": 9}}}, True),
    ({"not": {"any": [{"subject": {"contains": "toner"}}, {"not": {"hour": {"equals": 22}}}]}}, True),
    ({"any": [{"all": [{"cc": {"exists": True}}, {"hour": {"equals": 22}}]},
              {"not": {"any": [{"weekday": {"in": ["sat"]}}, {"from_domain": {"equals": "x.example"}}]}}]}, False),
    ({"any": [{"all": [{"cc": {"not_exists": True}}, {"hour": {"equals": 22}}]}], "weekday": {"equals": 6}}, True),
    ({}, True),
])
def test_combinators_nest_freely(when: dict[str, Any], expected: bool) -> None:
    assert holds(when, mail()) is expected


# --- actions, order, stop, on, enabled --------------------------------------------------------

def test_each_action_reaches_the_outcome() -> None:
    then = {"queue": "billing", "priority": "low", "assign": "Carol@Desk.example", "tags": ["a", "b", "a"],
            "remove_tags": ["old"], "sla": "gold", "acknowledge": "ack_vip", "notify": ["Boss@Desk.example"],
            "status": "pending", "spam": False}
    result = evaluate(rules_of(({}, then)), mail())
    assert result.outcome == Outcome(queue="billing", priority="low", assignee="carol@desk.example", tags=("a", "b"),
                                     remove_tags=("old",), sla="gold", acknowledge="ack_vip",
                                     notify=("boss@desk.example",), status="pending", spam=False)
    assert result.trace[0].actions == Actions(queue="billing", priority="low", assign="carol@desk.example",
                                              tags=("a", "b"), remove_tags=("old",), sla="gold",
                                              acknowledge="ack_vip", notify=("boss@desk.example",),
                                              status="pending", spam=False)


def test_later_rules_override_scalars_and_tags_accumulate() -> None:
    rules = rules_of(
        ({}, {"queue": "a", "priority": "high", "tags": ["x", "y"], "notify": ["n1@d.example"],
              "acknowledge": False, "assign": "least_open"}),
        ({}, {"queue": "b", "tags": ["z"], "remove_tags": ["x"], "notify": ["n2@d.example", "n1@d.example"],
              "acknowledge": True}),
        ({}, {"tags": ["x"], "remove_tags": ["y", "gone"], "assign": "dave@d.example"}),
    )
    outcome = evaluate(rules, mail()).outcome
    assert outcome == Outcome(queue="b", priority="high", assignee="dave@d.example", tags=("z", "x"),
                              remove_tags=("y", "gone"), acknowledge=True,
                              notify=("n1@d.example", "n2@d.example"))
    strategy_last = evaluate(rules_of(({}, {"assign": "dave@d.example"}), ({}, {"assign": "round_robin"})), mail())
    assert (strategy_last.outcome.assignee, strategy_last.outcome.assign_strategy) == (None, "round_robin")


def test_a_rule_that_does_not_match_changes_nothing() -> None:
    rules = rules_of(({}, {"queue": "a"}), ({"subject": {"contains": "toner"}}, {"queue": "b", "tags": ["t"]}))
    result = evaluate(rules, mail())
    assert result.outcome == Outcome(queue="a")
    assert (result.trace[1].status, result.trace[1].matched, result.trace[1].actions) == ("not_matched", False, None)


def test_stop_skips_every_later_rule_but_only_when_its_rule_matches() -> None:
    rules = compile_rules([
        {"name": "not me", "when": {"subject": {"contains": "toner"}}, "then": {"queue": "t"}, "stop": True},
        {"name": "stopper", "when": {}, "then": {"queue": "s"}, "stop": True},
        {"name": "after", "when": {}, "then": {"queue": "x"}},
        {"name": "disabled after", "when": {}, "enabled": False},
    ])
    result = evaluate(rules, mail())
    assert [step.status for step in result.trace] == ["not_matched", "matched", "stopped", "stopped"]
    assert result.outcome.queue == "s"
    assert all(step.skipped for step in result.trace[2:])


@pytest.mark.parametrize(("on", "followup", "runs"), [
    (None, False, True), (None, True, False), ("new", True, False),
    ("followup", True, True), ("followup", False, False), ("any", True, True), ("any", False, True),
])
def test_on_chooses_new_tickets_followups_or_both(on: str | None, followup: bool, runs: bool) -> None:
    rule: dict[str, Any] = {"name": "r", "when": {}, "then": {"tags": ["t"]}}
    if on is not None:
        rule["on"] = on
    result = evaluate(compile_rules([rule]), mail(followup=followup))
    assert result.trace[0].status == ("matched" if runs else "not_on")
    assert result.outcome.tags == (("t",) if runs else ())
    if not runs:
        assert result.trace[0].because.startswith(f'not run: on = "{on or "new"}" and this mail is ')


def test_a_disabled_rule_is_skipped_and_says_so() -> None:
    result = evaluate(compile_rules([{"name": "off", "when": {}, "then": {"queue": "q"}, "enabled": False}]), mail())
    assert (result.trace[0].status, result.trace[0].because) == ("disabled", "not run: enabled = false")
    assert result.outcome.is_empty


def test_no_rules_and_no_match_give_an_empty_outcome() -> None:
    assert evaluate(compile_rules([]), mail()).outcome.is_empty
    empty = evaluate(RuleSet(), mail())
    assert (empty.outcome, empty.trace, empty.outcome.is_empty) == (Outcome(), (), True)
    assert Outcome().as_dict() == {"queue": None, "priority": None, "assignee": None, "assign_strategy": None,
                                   "tags": [], "remove_tags": [], "sla": None, "acknowledge": None,
                                   "spam": None, "status": None, "notify": []}


def test_a_rule_failing_at_run_time_is_skipped_and_the_others_apply() -> None:
    rules = rules_of(({}, {"tags": ["first"]}),
                     ({"subject": {"contains": "x"}}, {"queue": "never"}),
                     ({"from": {"exists": True}}, {"tags": ["last"]}))
    result = evaluate(rules, mail(subject=None))  # a value that cannot be read as text
    assert [step.status for step in result.trace] == ["matched", "failed", "matched"]
    assert result.trace[1].because.startswith("failed: AttributeError: ")
    assert result.outcome == Outcome(tags=("first", "last"))


@pytest.mark.parametrize(("when", "fields"), [
    ({"previous_tickets": {"at_least": 1}}, {"previous_tickets": None}),
    ({"previous_tickets": {"not_equals": 1}}, {"previous_tickets": "3"}),
    ({"sender_is_agent": {"equals": False}}, {"sender_is_agent": None}),
    ({"to": {"contains": "x"}}, {"to": ("a@x.example", None)}),
    ({"body": {"matches": "x"}}, {"body": b"bytes, not text"}),
])
def test_a_value_of_the_wrong_kind_fails_the_rule_instead_of_deciding_it(
        when: dict[str, Any], fields: dict[str, Any]) -> None:
    result = evaluate(compile_rules([{"name": "r", "when": when, "then": {"queue": "q"}}]), mail(**fields))
    assert (result.trace[0].status, result.outcome.is_empty) == ("failed", True)
    assert result.trace[0].because.startswith("failed: ")


def test_the_trace_is_plain_json() -> None:
    result = evaluate(rules_from_toml(ISSUE_EXAMPLE), mail(subject="outage", followup=False))
    data = json.loads(json.dumps(result.as_dict()))
    assert data["rules"][1] == {"index": 1, "rule": "outage to level 2", "status": "matched", "matched": True,
                                "because": 'subject contains "outage"',
                                "actions": {"queue": "level2", "priority": "urgent", "assign": "least_open"}}
    assert data["outcome"]["queue"] == "level2"


def test_each_mail_field_is_folded_at_most_once_per_input() -> None:
    calls = []

    class CountingText(str):
        def casefold(self) -> str:
            calls.append(1)
            return str.casefold(self)

    rules = rules_of(*[({"subject": {"contains": word}}, {"tags": [word]}) for word in ("a", "b", "c", "fire")],
                     ({"subject": {"in": ["x"]}, "not": {"subject": {"equals": "y"}}}, {}))
    once = mail(subject=CountingText("Printer on fire"))
    result = evaluate(rules, once)
    [step.because for step in result.trace]
    evaluate(rules, once)
    assert len(calls) == 1


# --- assignment ---------------------------------------------------------------------------------

AGENTS = ["ann@desk.example", "ben@desk.example", "cat@desk.example"]


def test_round_robin_takes_the_agent_after_the_last_one() -> None:
    assert round_robin(AGENTS, None) == "ann@desk.example"
    assert round_robin(AGENTS, "ann@desk.example") == "ben@desk.example"
    assert round_robin(AGENTS, "CAT@desk.example") == "ann@desk.example"
    assert round_robin(AGENTS, "left@desk.example") == "ann@desk.example"
    assert round_robin([], "ann@desk.example") is None


def test_least_open_takes_the_least_busy_agent_and_breaks_ties_by_config_order() -> None:
    assert least_open(AGENTS, {"ann@desk.example": 3, "ben@desk.example": 1, "cat@desk.example": 1}) == (
        "ben@desk.example")
    assert least_open(AGENTS, {"ann@desk.example": 2, "Ben@desk.example": 2}) == "cat@desk.example"
    assert least_open(AGENTS, {}) == "ann@desk.example"
    assert least_open([], {}) is None


def test_choose_agent_dispatches_on_the_strategy_name() -> None:
    assert choose_agent("round_robin", AGENTS, last_assignee="ben@desk.example") == "cat@desk.example"
    assert choose_agent("least_open", AGENTS, open_tickets={"ann@desk.example": 1}) == "ben@desk.example"
    with pytest.raises(ValueError, match="unknown assignment strategy"):
        choose_agent("random", AGENTS)


# --- validation at load -------------------------------------------------------------------------

def test_an_invalid_pattern_names_the_rule_and_the_key() -> None:
    data = tomllib.loads(ISSUE_EXAMPLE.replace(r"(?i)\\b(down|offline)\\b", r"(?<=x)down"))["rules"]
    assert error_of(data) == ('rules[1] "outage to level 2": when.any[1].body.matches: '
                              "invalid pattern (RE2 syntax): invalid perl operator: (?<=")


@pytest.mark.parametrize(("rule", "message"), [
    ({"when": {"subjet": {"contains": "x"}}},
     "rules[0] \"r\": when.subjet: unknown field 'subjet' (fields: address, from, "),
    ({"when": {"subject": {"containz": "x"}}}, "rules[0] \"r\": when.subject.containz: unknown operator 'containz'"),
    ({"when": {"subject": {"not_not_in": ["x"]}}}, "rules[0] \"r\": when.subject.not_not_in: unknown operator"),
    ({"when": {"hour": {"contains": "1"}}},
     "rules[0] \"r\": when.hour.contains: operator 'contains' does not apply to hour (a number field: "),
    ({"when": {"has_attachment": {"exists": True}}}, "rules[0] \"r\": when.has_attachment.exists: operator 'exists'"),
    ({"when": {"hour": {"at_least": 24}}},
     'rules[0] "r": when.hour.at_least: expected a whole number from 0 to 23, got 24'),
    ({"when": {"previous_tickets": {"equals": True}}}, 'rules[0] "r": when.previous_tickets.equals: expected a whole'),
    ({"when": {"weekday": {"in": ["sat", "caturday"]}}}, 'rules[0] "r": when.weekday.in: expected a weekday'),
    ({"when": {"automated": {"in": ["list", "lists"]}}},
     "rules[0] \"r\": when.automated.in: unknown automated value 'lists' (normal, auto_reply, "),
    ({"when": {"subject": {"contains": 3}}}, 'rules[0] "r": when.subject.contains: expected a string, got 3'),
    ({"when": {"subject": {"in": []}}}, 'rules[0] "r": when.subject.in: expected a non-empty list of strings'),
    ({"when": {"subject": {"exists": "yes"}}}, 'rules[0] "r": when.subject.exists: expected true or false'),
    ({"when": {"subject": {"matches": 1}}}, 'rules[0] "r": when.subject.matches: expected a pattern'),
    ({"when": {"subject": "outage"}}, 'rules[0] "r": when.subject: expected a table of operators'),
    ({"when": {"any": []}}, 'rules[0] "r": when.any: expected a non-empty list of condition tables'),
    ({"when": {"all": [{"hour": {"equals": 1}}, "x"]}}, 'rules[0] "r": when.all[1]: expected a table of conditions'),
    ({"when": {"not": {"nope": {"equals": 1}}}}, "rules[0] \"r\": when.not.nope: unknown field 'nope'"),
    ({"when": {"header.": {"exists": True}}}, "rules[0] \"r\": when.header.: '' is not a header name"),
    ({"when": {"header": {"Bad Name": {"exists": True}}}}, "rules[0] \"r\": when.header.Bad Name: 'Bad Name' is not"),
    ({"when": "everything"}, 'rules[0] "r": when: expected a table of conditions'),
    ({}, 'rules[0] "r": when: missing (when = {} matches every mail)'),
    ({"when": {}, "stoop": True}, 'rules[0] "r": stoop: unknown key (keys: name, when, then, stop, enabled, on)'),
    ({"when": {}, "stop": "yes"}, 'rules[0] "r": stop: expected true or false, got "yes"'),
    ({"when": {}, "enabled": 0}, 'rules[0] "r": enabled: expected true or false, got 0'),
    ({"when": {}, "on": "reply"}, 'rules[0] "r": on: expected one of new, followup, any, got "reply"'),
    ({"when": {}, "then": {"queeu": "x"}}, "rules[0] \"r\": then.queeu: unknown action 'queeu' (actions: queue, "),
    ({"when": {}, "then": {"priority": "hihg"}},
     'rules[0] "r": then.priority: unknown priority "hihg" (low, normal, high, urgent)'),
    ({"when": {}, "then": {"status": "done"}}, 'rules[0] "r": then.status: unknown status "done" (new, open, '),
    ({"when": {}, "then": {"assign": "whoever"}},
     'rules[0] "r": then.assign: expected an agent\'s address, "round_robin" or "least_open", got "whoever"'),
    ({"when": {}, "then": {"tags": "vip"}}, 'rules[0] "r": then.tags: expected a list of tags'),
    ({"when": {}, "then": {"remove_tags": [""]}}, 'rules[0] "r": then.remove_tags: expected a list of tags'),
    ({"when": {}, "then": {"notify": ["boss"]}}, 'rules[0] "r": then.notify: "boss" is not a mail address'),
    ({"when": {}, "then": {"notify": "boss@x.example"}}, 'rules[0] "r": then.notify: expected a list of addresses'),
    ({"when": {}, "then": {"queue": ""}}, 'rules[0] "r": then.queue: expected a non-empty string, got ""'),
    ({"when": {}, "then": {"acknowledge": 1}}, 'rules[0] "r": then.acknowledge: expected a non-empty string'),
    ({"when": {}, "then": {"spam": "yes"}}, 'rules[0] "r": then.spam: expected true or false, got "yes"'),
    ({"when": {}, "then": "queue"}, 'rules[0] "r": then: expected a table of actions'),
])
def test_each_config_error_names_the_rule_and_the_key(rule: dict[str, Any], message: str) -> None:
    assert error_of([{"name": "r", **rule}]).startswith(message)


def test_rule_level_errors_name_the_rule_by_position() -> None:
    assert error_of([{"name": "a", "when": {}}, {"when": {}}]) == "rules[1]: name: missing"
    assert error_of([{"name": " ", "when": {}}]) == "rules[0]: name: expected a non-empty string"
    assert error_of([{"name": "a", "when": {}}, "b"]) == "rules[1]: (rule): expected a table with name, when and then"
    assert error_of([{"name": "a", "when": {}}, {"name": "a", "when": {}}]) == (
        'rules[1] "a": name: used twice (also rules[0])')
    assert error_of({"name": "a"}) == "rules: expected a list of tables ([[rules]])"


def test_unknown_references_name_the_rule_and_the_key() -> None:
    rules = rules_from_toml(ISSUE_EXAMPLE.replace('"level2"', '"levl2"'))
    known = dict(queues={"support", "level2"}, agents={"Ann@desk.example"}, template_kinds={"ack", "ack_vip"})
    with pytest.raises(RuleError) as caught:
        check_references(rules, **known)
    assert str(caught.value) == "rules[1] \"outage to level 2\": then.queue: unknown queue 'levl2'"

    check_references(rules_of(({}, {"assign": "ann@DESK.example", "acknowledge": "ack_vip", "sla": "any"})),
                     **known)
    for then, message in [
        ({"assign": "bob@desk.example"}, "rules[0] \"rule 0\": then.assign: unknown agent 'bob@desk.example'"),
        ({"acknowledge": "ack_vipp"}, "rules[0] \"rule 0\": then.acknowledge: unknown template kind 'ack_vipp'"),
        ({"sla": "golden"}, "rules[0] \"rule 0\": then.sla: unknown SLA policy 'golden'"),
    ]:
        with pytest.raises(RuleError) as caught:
            check_references(rules_of(({}, then)), **known, sla_policies={"gold"})
        assert str(caught.value) == message


def test_a_rules_file_holds_only_rules_and_must_be_toml() -> None:
    with pytest.raises(RuleError, match=r"^desk: unknown key \(a rules file holds only \[\[rules\]\] tables\)$"):
        rules_from_toml('[desk]\ntimezone = "UTC"\n')
    with pytest.raises(RuleError, match="^not valid TOML: "):
        rules_from_toml("[[rules]\n")
    assert len(rules_from_toml("")) == 0


def test_a_ruleset_is_a_pydantic_field_that_dumps_what_it_was_given() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Desk(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rules: RuleSet = RuleSet()

    data = tomllib.loads(ISSUE_EXAMPLE)
    desk = Desk.model_validate(data)
    assert [rule.name for rule in desk.rules] == ["vip customers", "outage to level 2", "newsletters"]
    assert desk.model_dump(mode="json") == data
    assert len(Desk().rules) == 0
    with pytest.raises(ValidationError) as caught:
        Desk.model_validate({"rules": [{"name": "x", "when": {"nope": {}}}]})
    assert caught.value.errors()[0]["msg"].startswith("Value error, rules[0] \"x\": when.nope: unknown field")


# --- the input ---------------------------------------------------------------------------------

def test_from_parsed_builds_every_field_from_a_parsed_mail() -> None:
    from maildesk.mail.parse import parse

    raw = (
        b"From: Alice <Alice@Customer.example>\r\nTo: support@desk.example, Bob <bob@x.example>\r\n"
        b"Cc: carol@y.example\r\nSubject: Invoice =?utf-8?q?f=C3=BCr?= May\r\nList-Id: <l.example>\r\n"
        b"Message-ID: <1@customer.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/html\r\n\r\n<p>See attached</p><img src=\"cid:logo@x\">\r\n"
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n\r\nPNG\r\n"
        b"--r--\r\n"
        b"--b\r\nContent-Type: application/pdf; name=invoice.pdf\r\nContent-Disposition: attachment;"
        b" filename=invoice.pdf\r\n\r\n%PDF\r\n--b--\r\n"
    )
    parsed = parse(raw)
    built = RuleInput.from_parsed(parsed, address="support@desk.example", automated="list", sender_is_agent=False,
                                  previous_tickets=4, arrived=SATURDAY_NIGHT, followup=True)
    assert (built.sender, built.from_domain, built.to, built.cc) == (
        "Alice@customer.example", "customer.example", ("support@desk.example", "bob@x.example"), ("carol@y.example",))
    assert built.subject == "Invoice für May"
    assert (built.attachment_names, built.attachment_types, built.has_attachment) == (
        ("invoice.pdf",), ("application/pdf",), True)
    assert built.header("list-id") == ("<l.example>",)
    assert (built.weekday, built.hour, built.followup, built.previous_tickets) == (6, 22, True, 4)
    assert "See attached" in built.text and "See attached" in built.body


def test_the_constants_mirror_the_classifier_and_the_ticket_statuses() -> None:
    from maildesk.desk import tickets
    from maildesk.mail import classify

    assert set(AUTOMATED_CLASSES) == {classify.NORMAL, classify.AUTO_REPLY, classify.AUTO_GENERATED,
                                      classify.BOUNCE, classify.LIST, classify.LOOP}
    assert STATUSES == tickets.STATUSES


def test_the_benchmark_rules_load_and_evaluate() -> None:
    text = (Path(__file__).resolve().parents[3] / "bench" / "rules50.toml").read_text(encoding="utf-8")
    rules = rules_from_toml(text)
    assert len(rules) == 50
    check_references(rules, queues={"support", "billing", "level2", "sales", "security", "accounts"},
                     agents={"ann@desk.example", "ben@desk.example", "cat@desk.example", "dan@desk.example"},
                     template_kinds={"ack", "notification"})
    result = evaluate(rules, mail(sender="ceo@bigcorp.example", subject="URGENT: invoice wrong, site down"))
    assert result.outcome.queue is not None
    assert dataclasses.asdict(result.outcome)
