"""Agents' commands at the top of a reply: each command, refusals, notes, macros, odd mail clients."""

from __future__ import annotations

import random

import pytest

from maildesk.desk.commands import COMMANDS, MACRO_LINE, PRIORITIES, STATUSES, Command, Refusal, parse


def names_and_arguments(text: str) -> list[tuple[str, str]]:
    return [(command.name, command.argument) for command in parse(text).commands]


@pytest.mark.parametrize("status", STATUSES)
def test_status(status: str) -> None:
    parsed = parse(f"#status {status}")
    assert parsed.commands == (Command("status", status, f"#status {status}"),)
    assert parsed.only_commands and not parsed.refused and not parsed.note


@pytest.mark.parametrize("priority", PRIORITIES)
def test_priority(priority: str) -> None:
    assert names_and_arguments(f"#priority {priority.upper()}") == [("priority", priority)]


def test_an_unknown_status_or_priority_is_refused_with_the_choices() -> None:
    parsed = parse("#status flying\n#priority meh\n#status\n#status new")
    assert not parsed.commands
    assert [refusal.reason for refusal in parsed.refused] == [
        "unknown status 'flying'; one of open, pending, solved, closed",
        "unknown priority 'meh'; one of low, normal, high, urgent",
        "#status needs a value: one of open, pending, solved, closed",
        "unknown status 'new'; one of open, pending, solved, closed",
    ]
    assert parsed.refused[0].line == "#status flying"
    assert parsed.refused[0].as_dict() == {"command": "#status flying", "reason": parsed.refused[0].reason}
    assert parsed.only_commands


def test_assign() -> None:
    assert names_and_arguments("#assign me\n#assign NONE\n#assign <Carol@Example.com>\n#assign Carol  Agent") == [
        ("assign", "me"), ("assign", "none"), ("assign", "Carol@Example.com"), ("assign", "Carol Agent")]
    assert parse("#assign").refused == (Refusal("#assign", "#assign needs an agent's address or name, me or none"),)


def test_queue_escalate_tags() -> None:
    text = "#queue billing\n#escalate customer is furious\n#tag vip\n#untag needs-info\n#escalate"
    assert names_and_arguments(text) == [("queue", "billing"), ("escalate", "customer is furious"), ("tag", "vip"),
                                         ("untag", "needs-info"), ("escalate", "")]
    assert parse("#queue").refused[0].reason == "#queue needs the name of a queue"


@pytest.mark.parametrize("tag", ["two tags", "<b>", "-leading", "x" * 65, "ü"])
def test_bad_tags_are_refused(tag: str) -> None:
    parsed = parse(f"#tag {tag}")
    assert not parsed.commands and "invalid tag" in parsed.refused[0].reason
    assert "needs a tag" in parse("#untag").refused[0].reason


def test_tags_keep_their_spelling() -> None:
    assert names_and_arguments("#tag Order.2026_v-1") == [("tag", "Order.2026_v-1")]


def test_unknown_command_words_at_the_top_are_refused_and_kept_from_the_customer() -> None:
    parsed = parse("#stauts solved\n#status pending\nWe are on it.")
    assert parsed.refused[0].line == "#stauts solved"
    assert parsed.refused[0].reason.startswith("unknown command #stauts; known are #status, #priority")
    assert names_and_arguments("#stauts solved\n#status pending") == [("status", "pending")]
    assert parsed.body == "We are on it." and not parsed.only_commands


@pytest.mark.parametrize("first_line", ["#123 is my order", "# heading", "#!", "##status solved", "#", "Hi #status"])
def test_lines_that_are_not_commands_end_the_block(first_line: str) -> None:
    parsed = parse(f"{first_line}\n#status solved")
    assert not parsed.has_commands
    assert parsed.body == f"{first_line}\n#status solved"


def test_commands_are_only_read_at_the_top() -> None:
    parsed = parse("\n\n#status solved\n\n#priority high\nDone, see below.\n#status closed\n#tag x")
    assert names_and_arguments("\n\n#status solved\n\n#priority high\nDone.\n#status closed") == [
        ("status", "solved"), ("priority", "high")]
    assert parsed.body == "Done, see below.\n#status closed\n#tag x"


def test_note() -> None:
    parsed = parse("#note\nCalled the customer, they will send the invoice.")
    assert parsed.note and parsed.body == "Called the customer, they will send the invoice."
    assert parsed.commands == (Command("note", "", "#note"),) and not parsed.only_commands
    inline = parse("#NOTE: called them\nmore")
    assert inline.note and inline.body == "called them\nmore"
    assert not parse("Hello\n#note").note


def test_a_reply_of_only_commands_mails_no_customer() -> None:
    for text in ("#status solved\n#tag done\n", "#status solved\n\n-- \nBob Agent\nACME",
                 "#status solved\n\nSent from my iPhone", "  #status solved  \r\n\r\n"):
        parsed = parse(text)
        assert parsed.only_commands and parsed.body == "", text
    assert not parse("#status solved\nThanks, fixed.").only_commands
    assert not parse("Just text").only_commands
    assert not parse("").only_commands and not parse("").has_commands


def test_mail_client_variations() -> None:
    text = "\ufeff\u00a0#Status:  Solved \r\n\u200b#PRIORITY:urgent\r#tag\tvip\r\n\r\nText\u00a0 \r\n"
    parsed = parse(text)
    assert names_and_arguments(text) == [("status", "solved"), ("priority", "urgent"), ("tag", "vip")]
    assert parsed.body == "Text"
    assert names_and_arguments("#status solved.") == [("status", "solved")]


def test_macro_anywhere_expands_at_its_place() -> None:
    parsed = parse("#status solved\n#macro Thanks\nHello Alice,\n\n#macro need_more_info\n\nBob")
    assert parsed.macros == ("thanks", "need_more_info")
    assert parsed.body == "#macro thanks\nHello Alice,\n\n#macro need_more_info\n\nBob"
    assert ("macro", "thanks") in names_and_arguments("#macro thanks")
    assert not parsed.only_commands
    assert MACRO_LINE.fullmatch("#macro need_more_info")


def test_bad_macro_lines_are_refused_and_dropped() -> None:
    parsed = parse("Hi\n#macro\n#macro ../../etc/passwd\n#macro two words\nBye")
    assert [refusal.reason for refusal in parsed.refused] == [
        "#macro needs the name of a macro",
        "invalid macro name '../../etc/passwd': up to 64 letters, digits, - and _",
        "invalid macro name 'two words': up to 64 letters, digits, - and _",
    ]
    assert parsed.body == "Hi\nBye" and parsed.macros == ()


def test_of_returns_commands_by_name() -> None:
    parsed = parse("#tag a\n#status open\n#tag b")
    assert [command.argument for command in parsed.of("tag")] == ["a", "b"]


def test_every_known_command_is_understood() -> None:
    arguments = {"status": "open", "priority": "low", "assign": "me", "queue": "q", "tag": "t", "untag": "t",
                 "note": "", "escalate": "", "macro": "thanks"}
    assert set(arguments) == set(COMMANDS)
    parsed = parse("\n".join(f"#{name} {argument}".rstrip() for name, argument in arguments.items()))
    assert [command.name for command in parsed.commands] == list(COMMANDS) and not parsed.refused


def test_never_raises() -> None:
    generator = random.Random(12)
    alphabet = "#: \n\r\t\u00a0abcsotupnqmeri-_.<>@0123456789ü\x00"
    for _ in range(2000):
        text = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 60)))
        parsed = parse(text)
        assert isinstance(parsed.body, str)
    assert parse(None).body == ""  # type: ignore[arg-type]
    huge = "#" + "a" * 100_000 + " x"
    assert not parse(huge).has_commands and parse(huge).body == huge  # no command word is that long
