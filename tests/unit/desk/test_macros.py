"""Macros: built-in and admin's canned answers, their variables, unknown and broken ones, expansion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maildesk.desk.commands import parse
from maildesk.desk.macros import (
    BUILTIN_MACROS, VARIABLES, MacroError, expand, list_macros, macro_variables, render_macro,
)

VARIABLES_OF_42 = macro_variables(requester_name="Alice Customer", ticket_id=42, subject="Printer on fire",
                                  queue="support", agent_name="Bob Agent")


def write_macro(templates: Path, name: str, text: str) -> None:
    (templates / "macros").mkdir(parents=True, exist_ok=True)
    (templates / "macros" / f"{name}.txt").write_text(text, encoding="utf-8")


def test_the_built_in_macros_are_listed_and_render_with_the_ticket() -> None:
    assert {"thanks", "need_more_info"} <= set(list_macros())
    assert list_macros(None) == list_macros(Path("/nonexistent"))
    for name in ("thanks", "need_more_info"):
        text = render_macro(name, VARIABLES_OF_42)
        assert text.startswith("Hello Alice Customer,") and "#42" in text and "Printer on fire" in text
        assert text.endswith("Bob Agent") and "{{" not in text
    anonymous = dict(VARIABLES_OF_42, requester_name="", agent_name="")
    assert render_macro("thanks", anonymous).startswith("Hello there,")
    assert render_macro("thanks", anonymous).endswith("support")


def test_macro_variables_are_the_documented_ones() -> None:
    assert tuple(VARIABLES_OF_42) == VARIABLES


def test_an_admins_macro_wins_over_the_built_in_one_and_is_listed(tmp_path: Path) -> None:
    write_macro(tmp_path, "thanks", "Cheers {{ requester_name }} from {{ queue }}!\n\n\n")
    write_macro(tmp_path, "refund", "Your refund for #{{ ticket_id }} is on its way.")
    write_macro(tmp_path, "Bad Name", "x")
    assert render_macro("thanks", VARIABLES_OF_42, tmp_path) == "Cheers Alice Customer from support!"
    assert render_macro("REFUND", VARIABLES_OF_42, tmp_path) == "Your refund for #42 is on its way."
    assert render_macro("need_more_info", VARIABLES_OF_42, tmp_path).startswith("Hello Alice")
    assert list_macros(tmp_path) == sorted({"thanks", "refund", "need_more_info", *list_macros()})


def test_an_unknown_macro_is_a_macro_error_naming_the_ones_there_are() -> None:
    with pytest.raises(MacroError, match=r"unknown macro 'nope'; there are: .*need_more_info.*thanks"):
        render_macro("nope", VARIABLES_OF_42)


@pytest.mark.parametrize("name", ["../../etc/passwd", "thanks.txt", "", "a b", "x" * 65, "-x"])
def test_invalid_names_never_reach_the_file_system(name: str) -> None:
    with pytest.raises(MacroError, match="invalid macro name"):
        render_macro(name, VARIABLES_OF_42)


@pytest.mark.parametrize(("text", "reason"), [
    ("{{ requester_nmae }}", "is broken: 'requester_nmae' is undefined; macros know requester_name"),
    ("{% if %}", "is broken: line 1:"),
    ("line\n{{ ticket_id / 0 }}", "is broken: ZeroDivisionError"),
    ("{{ subject.__class__.__mro__ }}", "refused by the sandbox"),
])
def test_a_broken_macro_is_a_one_line_macro_error(tmp_path: Path, text: str, reason: str) -> None:
    write_macro(tmp_path, "broken", text)
    with pytest.raises(MacroError) as raised:
        render_macro("broken", VARIABLES_OF_42, tmp_path)
    assert reason in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith("macro 'broken'")


def test_an_edited_macro_is_picked_up(tmp_path: Path) -> None:
    write_macro(tmp_path, "hours", "We open at 9.")
    assert render_macro("hours", VARIABLES_OF_42, tmp_path) == "We open at 9."
    write_macro(tmp_path, "hours", "We open at 8 now, the longer text.")
    os.utime(tmp_path / "macros" / "hours.txt", (1, 1))  # a new mtime even on a coarse clock
    assert render_macro("hours", VARIABLES_OF_42, tmp_path) == "We open at 8 now, the longer text."


def test_macros_are_not_html_escaped() -> None:
    variables = dict(VARIABLES_OF_42, subject="<b>R&D</b>")
    assert '"<b>R&D</b>"' in render_macro("thanks", variables)


def test_expand_puts_each_macro_at_its_place_with_the_agents_text_around_it(tmp_path: Path) -> None:
    write_macro(tmp_path, "sig", "-- {{ agent_name }}")
    parsed = parse("#status solved\nFirst my words.\n#macro thanks\nP.S. one more thing\n#macro sig")
    text = expand(parsed.body, lambda name: render_macro(name, VARIABLES_OF_42, tmp_path))
    lines = text.split("\n")
    assert lines[0] == "First my words."
    assert lines[1] == "Hello Alice Customer,"
    assert "P.S. one more thing" in lines and lines[-1] == "-- Bob Agent"
    assert "#macro" not in text


def test_expand_does_not_rescan_what_a_macro_wrote_and_passes_errors_on() -> None:
    assert expand("a\n#macro x\nb", lambda name: "#macro x") == "a\n#macro x\nb"
    assert expand("no macros here\n#macro", lambda name: "never") == "no macros here\n#macro"

    def unknown(name: str) -> str:
        raise MacroError(f"unknown macro {name!r}")

    with pytest.raises(MacroError):
        expand("#macro nope", unknown)


def test_the_built_in_macros_folder_is_in_the_package() -> None:
    assert (BUILTIN_MACROS / "thanks.txt").is_file() and (BUILTIN_MACROS / "need_more_info.txt").is_file()
