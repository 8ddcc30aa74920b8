"""Templates for agents working by mail: ``command_result`` and the richer ``notification``,
with their new variables and without them (the desk context may not have them yet)."""

from __future__ import annotations

import pytest

from maildesk.templating import KINDS, Renderer
from tests.unit.test_templates import SHIPPED, sample_context

APPLIED = [{"command": "#status solved", "detail": "status open -> solved"}, {"command": "#tag vip", "detail": ""}]
REFUSED = [{"command": "#stauts solved", "reason": "unknown command #stauts"},
           {"command": "#assign <script>", "reason": "no agent called '<script>'"}]


def test_command_result_is_a_kind_of_mail() -> None:
    assert "command_result" in KINDS


@pytest.mark.parametrize("language", SHIPPED)
def test_command_result_lists_what_was_applied_and_what_was_refused_and_why(language: str) -> None:
    context = sample_context() | {"applied": APPLIED, "refused": REFUSED}
    rendered = Renderer().render("command_result", context, language=language)
    assert rendered.subject.startswith("[ACME #42]") and "2" in rendered.subject
    for part in (rendered.text, rendered.html):
        for item in APPLIED:
            assert item["command"] in part
        assert "unknown command #stauts" in part and "#macro" in part
    assert "status open -> solved" in rendered.text and "status open -&gt; solved" in rendered.html
    assert "<script>" in rendered.text and "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html


@pytest.mark.parametrize("language", SHIPPED)
def test_command_result_renders_without_its_variables(language: str) -> None:
    rendered = Renderer().render("command_result", sample_context(), language=language)
    assert "0" in rendered.subject
    assert {"en": "No command was found", "id": "Tidak ada perintah"}[language] in rendered.text


@pytest.mark.parametrize("language", SHIPPED)
def test_the_notification_shows_the_ticket_the_customers_history_and_the_commands(language: str) -> None:
    context = sample_context()
    context["ticket"] |= {"assignee": "Bob Agent", "tags": ["vip", "printer"]}
    context["history"] = {"count": 4, "recent": [
        {"id": 40, "subject": "Toner <low>", "status": "solved", "date": "2026-10-01"},
        {"id": 38, "subject": "Paper jam", "status": "closed", "date": "2026-09-12"},
    ]}
    rendered = Renderer().render("notification", context, queue="support", language=language)
    for part in (rendered.text, rendered.html):
        assert "The printer is still smoking." in part
        assert "support" in part and "high" in part and "Bob Agent" in part and "vip, printer" in part
        assert "2026-11-02 12:00 UTC" in part
        assert "#40" in part and "2026-10-01" in part and "Paper jam" in part and "4" in part
        assert "#status open|pending|solved|closed" in part and "#note" in part and "#macro" in part
    assert "Toner <low>" in rendered.text and "Toner &lt;low&gt;" in rendered.html


@pytest.mark.parametrize("language", SHIPPED)
def test_the_notification_without_the_new_variables_shows_no_history(language: str) -> None:
    context = sample_context()
    context["sla"] = {**context["sla"], "due_at": ""}
    rendered = Renderer().render("notification", context, language=language)
    assert "#40" not in rendered.text and "earlier" not in rendered.text and "sebelumnya" not in rendered.text
    assert {"en": "(nobody)", "id": "(belum ada)"}[language] in rendered.text
    assert "Due" not in rendered.text and "Tenggat" not in rendered.text
    first = Renderer().render("notification", context | {"history": {"count": 0, "recent": []}}, language=language)
    assert {"en": "first ticket", "id": "tiket pertama"}[language] in first.text + first.html
