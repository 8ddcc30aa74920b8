"""Routing from the command line, end to end through the CLI on hand-written mails
(tests/data/rules/): ``rules test``, ``rules replay`` (which writes nothing), ``agents list``,
the routing filters of ``tickets list``, and ``tickets assign`` / ``set-queue``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select

from maildesk.cli import main
from maildesk.models import Base
from tests.helpers import config_toml, make_mail
from tests.unit.desk.test_rules import ISSUE_EXAMPLE

DATA = Path(__file__).parents[1] / "data" / "rules"

ROUTING = """
[[queues]]
name = "support"
escalate_to = "level2"

[[queues]]
name = "billing"

[[queues]]
name = "level2"
level = 2

[[agents]]
address = "rina@example.com"
name = "Rina"
queues = ["support", "level2"]

[[agents]]
address = "tom@example.com"
name = "Tom"
queues = ["level2"]
""" + ISSUE_EXAMPLE

CHANGED_RULES = """
[[rules]]
name = "vip customers"
when = { from_domain = { in = ["bigcorp.example"] } }
then = { priority = "urgent", tags = ["vip", "gold"] }

[[rules]]
name = "outage to first level"
when = { body = { matches = "(?i)\\\\bdown\\\\b" } }
then = { queue = "support", priority = "urgent", assign = "rina@example.com" }
"""


@pytest.fixture
def config_file(tmp_path: Path, config_data: dict) -> Path:
    path = tmp_path / "maildesk.toml"
    path.write_text(config_toml(config_data) + ROUTING)
    return path


def cli(config_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-c", str(config_file), *args], catch_exceptions=False)
    return result.exit_code, result.output


def ingest_all(config_file: Path) -> None:
    """Three new tickets: #1 vip, #2 outage, #3 newsletter; then a follow-up on #1."""
    for name in ("vip", "outage", "newsletter"):
        assert cli(config_file, "ingest", str(DATA / f"{name}.eml"))[0] == 0
    assert cli(config_file, "ingest", str(DATA / "vip-reply.eml"))[0] == 0


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {table.name: connection.scalar(select(func.count()).select_from(table)) or 0
                    for table in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def test_rules_test_on_the_three_example_rules(config_file: Path) -> None:
    assert cli(config_file, "db", "upgrade")[0] == 0

    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert "note" not in data
    assert [(r["name"], r["matched"]) for r in data["rules"]] == [
        ("vip customers", True), ("outage to level 2", False), ("newsletters", False)]
    assert data["rules"][0]["because"] == 'from_domain "bigcorp.example" in ["bigcorp.example", "gov.example"]'
    assert data["rules"][0]["actions"] == {"priority": "high", "tags": ["vip"]}
    assert data["rules"][1]["actions"] is None
    assert data["outcome"] == {"queue": "support", "priority": "high", "assignee": None, "tags": ["vip"],
                               "sla": None, "acknowledge": True, "spam": False}

    code, out = cli(config_file, "rules", "test", str(DATA / "outage.eml"), "--json")
    data = json.loads(out)
    assert [r["status"] for r in data["rules"]] == ["not_matched", "matched", "stopped"]
    assert data["rules"][1]["because"].startswith("body matches")
    assert data["rules"][2]["because"] == 'not run: rules[1] "outage to level 2" matched and has stop = true'
    # least_open resolved against the (readable, empty) database: a tie goes to the first agent listed
    assert data["outcome"] == {"queue": "level2", "priority": "urgent", "assignee": "rina@example.com",
                               "tags": [], "sla": None, "acknowledge": True, "spam": False}

    code, out = cli(config_file, "rules", "test", str(DATA / "newsletter.eml"), "--json")
    data = json.loads(out)
    assert [r["matched"] for r in data["rules"]] == [False, False, True]
    assert "automated \"list\" in" in data["rules"][2]["because"]
    assert data["outcome"]["spam"] is True and data["outcome"]["acknowledge"] is False

    code, out = cli(config_file, "rules", "test", str(DATA / "outage.eml"))
    assert code == 0
    assert "matched      outage to level 2" in out and "  assignee     rina@example.com" in out


def test_rules_test_without_a_database_says_so_and_creates_none(config_file: Path, database_url: str) -> None:
    code, out = cli(config_file, "rules", "test", str(DATA / "outage.eml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert "previous_tickets counted as 0" in data["note"]
    assert data["outcome"]["assignee"] == "least_open"
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
    else:  # PostgreSQL, an empty schema: read, not migrated
        engine = create_engine(database_url)
        assert inspect(engine).get_table_names() == []
        engine.dispose()


def test_rules_test_to_and_now(config_file: Path) -> None:
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--to", "billing@example.com",
                    "--now", "2026-11-07T23:30", "--json")
    assert code == 0 and json.loads(out)["outcome"]["queue"] == "billing"
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--to", "someone@else.example")
    assert code == 2 and "not one of our support addresses" in out and "Traceback" not in out
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--now", "tuesday")
    assert code == 2 and "not an ISO 8601" in out


def test_rules_replay_lists_changed_routing_and_writes_nothing(
    config_file: Path, database_url: str, tmp_path: Path
) -> None:
    ingest_all(config_file)
    code, out = cli(config_file, "rules", "replay", "--json")
    assert code == 0 and json.loads(out) == []  # the same rules route the same way
    code, out = cli(config_file, "rules", "replay")
    assert out.strip() == "0 of 4 mails would be routed differently"

    rules_file = tmp_path / "new-rules.toml"
    rules_file.write_text(CHANGED_RULES)
    before = row_counts(database_url)
    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--json")
    assert code == 0
    assert row_counts(database_url) == before
    changes = {c["message_id"]: c for c in json.loads(out)}
    assert set(changes) == {"<vip-1@bigcorp.example>", "<outage-1@smallshop.example>",
                            "<nl-2026-11@vendor.example>"}  # the follow-up (no rule on follow-ups) keeps its routing
    vip = changes["<vip-1@bigcorp.example>"]
    assert vip["ticket_id"] == 1 and vip["changed"] == ["priority", "tags"]
    assert (vip["old"]["priority"], vip["new"]["priority"]) == ("high", "urgent")
    assert (vip["old"]["tags"], vip["new"]["tags"]) == (["vip"], ["vip", "gold"])
    outage = changes["<outage-1@smallshop.example>"]
    assert outage["changed"] == ["queue"]  # least_open gave rina then; the new rule names her
    assert (outage["old"]["assignee"], outage["new"]["assignee"]) == ("rina@example.com", "rina@example.com")
    newsletter = changes["<nl-2026-11@vendor.example>"]
    assert newsletter["changed"] == ["acknowledge", "spam"]
    assert newsletter["old"]["spam"] is True and newsletter["new"]["spam"] is False

    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file))
    assert "ticket #1  <vip-1@bigcorp.example>  (new ticket)" in out
    assert "  priority     high  ->  urgent" in out
    assert out.strip().endswith("3 of 4 mails would be routed differently")
    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--last", "1", "--json")
    assert json.loads(out) == []  # the last mail is the follow-up
    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--since", "2999-01-01")
    assert out.strip() == "0 of 0 mails would be routed differently"
    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--since", "2000-01-01T00:00+07:00")
    assert out.strip().endswith("3 of 4 mails would be routed differently")
    assert row_counts(database_url) == before


def test_rules_replay_names_a_strategy_and_does_not_compare_it(config_file: Path, tmp_path: Path) -> None:
    ingest_all(config_file)
    rules_file = tmp_path / "round-robin.toml"
    rules_file.write_text('[[rules]]\nname = "all to level 2"\nwhen = {}\n'
                          'then = { queue = "level2", assign = "round_robin" }\n')
    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--json")
    changes = {c["message_id"]: c for c in json.loads(out)}
    outage = changes["<outage-1@smallshop.example>"]
    assert outage["changed"] == ["priority"] and outage["new"]["assignee"] == "round_robin"
    assert changes["<vip-1@bigcorp.example>"]["changed"] == ["queue", "priority", "tags"]


@pytest.mark.parametrize("text, said", [
    ("[[rules]]\nname = 'x'\nwhen = {}\nthen = { queue = 'levl2' }\n", "then.queue: unknown queue 'levl2'"),
    ("[[rules]]\nname = 'x'\nwhen = { subjekt = { contains = 'a' } }\n", "unknown field 'subjekt'"),
    ("[[rules\n", "not valid TOML"),
])
def test_a_bad_rules_file_is_one_line_exit_2(config_file: Path, tmp_path: Path, text: str, said: str) -> None:
    rules_file = tmp_path / "bad.toml"
    rules_file.write_text(text)
    result = CliRunner().invoke(main, ["-c", str(config_file), "rules", "replay", "--rules", str(rules_file)])
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, ["-c", str(config_file), "rules", "replay", "--rules",
                                       str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "cannot read it" in result.output


def test_tickets_list_filters(config_file: Path) -> None:
    ingest_all(config_file)

    def ids(*args: str) -> list[int]:
        code, out = cli(config_file, "tickets", "list", *args, "--json")
        assert code == 0
        return [t["id"] for t in json.loads(out)["items"]]

    assert ids("--priority", "high") == [1]
    assert ids("--tag", "vip") == [1]
    assert ids("--tag", "vi") == []
    assert ids("--assignee", "rina@example.com") == [2]
    assert ids("--assignee", "RINA@example.com", "--priority", "urgent") == [2]
    assert ids("--assignee", "none") == [3, 1]
    assert ids("--assignee", "none", "--status", "closed") == [3]  # the newsletter, spam: closed
    code, out = cli(config_file, "tickets", "list", "--priority", "vital")
    assert code == 2


def test_agents_list_counts_open_tickets(config_file: Path) -> None:
    ingest_all(config_file)
    code, out = cli(config_file, "agents", "list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"address": "rina@example.com", "name": "Rina", "queues": ["support", "level2"], "open_tickets": 1},
        {"address": "tom@example.com", "name": "Tom", "queues": ["level2"], "open_tickets": 0},
    ]
    assert cli(config_file, "tickets", "set-status", "2", "solved", "--no-notify")[0] == 0
    _, out = cli(config_file, "agents", "list")
    assert out.splitlines()[0].split() == ["ADDRESS", "NAME", "QUEUES", "OPEN_TICKETS"]
    assert out.splitlines()[1].split()[-1] == "0"


def test_assign_and_set_queue_are_in_the_history(config_file: Path) -> None:
    ingest_all(config_file)

    code, out = cli(config_file, "tickets", "assign", "1", "tom", "--actor", "lead@example.com")
    assert code == 0 and out.strip() == ("ticket #1: assignee - -> tom@example.com "
                                         "(not an agent of queue 'support')")
    code, out = cli(config_file, "tickets", "set-queue", "1", "level2", "--actor", "lead@example.com")
    assert code == 0 and out.strip() == "ticket #1: queue support -> level2"
    code, out = cli(config_file, "tickets", "assign", "1", "none")
    assert code == 0 and out.strip() == "ticket #1: assignee tom@example.com -> -"

    _, out = cli(config_file, "tickets", "show", "1", "--json")
    ticket = json.loads(out)
    assert ticket["queue"] == "level2" and ticket["assignee"] is None
    assigned = [e for e in ticket["events"] if e["type"] == "assigned"]
    assert [(e["actor"], e["detail"]["old"], e["detail"]["new"]) for e in assigned] == [
        ("lead@example.com", None, "tom@example.com"), (assigned[1]["actor"], "tom@example.com", None)]
    assert "not an agent of queue 'support'" in assigned[0]["reason"]
    assert assigned[1]["actor"].startswith("cli:")
    [routed] = [e for e in ticket["events"] if e["type"] == "routed"]
    assert (routed["actor"], routed["detail"]) == ("lead@example.com", {"old": "support", "new": "level2"})

    code, out = cli(config_file, "tickets", "assign", "2", "RINA@EXAMPLE.COM")
    assert code == 0 and "already assigned to rina@example.com" in out


@pytest.mark.parametrize("args, code, said", [
    (("assign", "1", "nobody@example.com"), 2, "unknown agent 'nobody@example.com'"),
    (("set-queue", "1", "sales"), 2, "unknown queue 'sales'"),
    (("assign", "42", "rina"), 1, "no ticket #42"),
    (("set-queue", "42", "level2"), 1, "no ticket #42"),
    (("assign", "99999999999", "rina"), 2, "99999999999"),
])
def test_assign_and_set_queue_errors(config_file: Path, args: tuple[str, ...], code: int, said: str) -> None:
    ingest_all(config_file)
    result = CliRunner().invoke(main, ["-c", str(config_file), "tickets", *args])
    assert result.exit_code == code and said in result.output and "Traceback" not in result.output


def test_replay_of_mail_processed_before_any_rule_compares_with_the_defaults(
    config_file: Path, tmp_path: Path
) -> None:
    without_rules = tmp_path / "no-rules.toml"
    without_rules.write_text(config_file.read_text().split("[[rules]]", 1)[0])
    ingest_all(without_rules)
    rules_file = tmp_path / "new-rules.toml"
    rules_file.write_text(CHANGED_RULES)

    code, out = cli(without_rules, "rules", "replay", "--rules", str(rules_file), "--json")

    assert code == 0
    changes = {c["message_id"]: c for c in json.loads(out)}
    assert set(changes) == {"<vip-1@bigcorp.example>", "<outage-1@smallshop.example>"}
    outage = changes["<outage-1@smallshop.example>"]
    assert outage["changed"] == ["priority", "assignee"]
    assert outage["old"] == {"queue": "support", "priority": "normal", "assignee": None, "tags": [], "sla": None,
                             "acknowledge": True, "spam": False}


def test_replay_finds_the_routing_of_a_mail_whose_ticket_was_merged(config_file: Path, tmp_path: Path) -> None:
    # A reply first, then the original, then the mail between them: ticket #2 is merged into #1.
    for mail in (make_mail(message_id="<r3@x.example>", in_reply_to="<r2@x.example>", subject="Re: Q"),
                 make_mail(message_id="<r1@x.example>", subject="Q"),
                 make_mail(message_id="<r2@x.example>", in_reply_to="<r1@x.example>", subject="Re: Q")):
        assert CliRunner().invoke(main, ["-c", str(config_file), "ingest"], input=mail).exit_code == 0
    _, out = cli(config_file, "tickets", "list", "--status", "merged", "--json")
    assert [t["id"] for t in json.loads(out)["items"]] == [2]
    rules_file = tmp_path / "low.toml"
    rules_file.write_text('[[rules]]\nname = "everything low"\nwhen = {}\nthen = { priority = "low" }\n')

    code, out = cli(config_file, "rules", "replay", "--rules", str(rules_file), "--json")

    changes = {c["message_id"]: (c["ticket_id"], c["followup"], c["changed"]) for c in json.loads(out)}
    assert changes == {"<r3@x.example>": (1, False, ["priority"]), "<r1@x.example>": (2, False, ["priority"])}


def test_rules_test_with_a_rules_file_reads_previous_tickets(config_file: Path, tmp_path: Path) -> None:
    rules_file = tmp_path / "returning.toml"
    rules_file.write_text('[[rules]]\nname = "returning customer"\nwhen = { previous_tickets = { at_least = 1 } }\n'
                          'then = { tags = ["returning"] }\n')
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--rules", str(rules_file), "--json")
    data = json.loads(out)
    assert code == 0 and "note" in data and data["rules"][0]["matched"] is False  # no database: 0

    assert cli(config_file, "ingest", str(DATA / "vip.eml"))[0] == 0
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--rules", str(rules_file), "--json")
    data = json.loads(out)
    assert [r["name"] for r in data["rules"]] == ["returning customer"]
    assert data["rules"][0]["because"] == "previous_tickets 1 is at least 1"
    assert data["outcome"]["tags"] == ["returning"]
    code, out = cli(config_file, "rules", "test", str(DATA / "vip.eml"), "--rules", str(tmp_path / "nope.toml"))
    assert code == 2 and "cannot read it" in out
