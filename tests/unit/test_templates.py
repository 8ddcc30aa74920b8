"""Templates: every kind in every language renders with the context the desk gives,
missing variables fail here, HTML is escaped, overrides and language fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from maildesk.config import AddressConfig, parse_config
from maildesk.desk import outbound
from maildesk.desk.tickets import Person
from maildesk.mail.quotes import REPLY_ABOVE_MARKER
from maildesk.models import Ticket
from maildesk.templating import BUILTIN, KINDS, Renderer, languages

SHIPPED = sorted(p.name for p in BUILTIN.iterdir() if p.is_dir() and p.name != "macros")
CUSTOMER_FACING = ("ack", "agent_reply", "update", "solved")


def sample_context(subject: str = "Printer on fire", name: str = "Alice Customer") -> dict:
    config = parse_config({"desk": {"tag_prefix": "ACME"}})
    ticket = Ticket(id=42, subject=subject, status="open", queue="support", priority="high",
                    requester="alice@customer.example", requester_name=name)
    served = AddressConfig(address="support@example.com", display_name="ACME Support")
    return outbound.context(
        config, ticket, served, message_text="The printer is still smoking.",
        agent=Person("bob@example.com", "Bob Agent"), event="new_ticket", change=("pending", "solved"),
        sla={"target": "first_response", "due_at": "2026-11-02 12:00 UTC", "minutes_left": 30, "minutes_overdue": 5},
    )


def test_english_and_indonesian_are_shipped_for_every_kind() -> None:
    assert SHIPPED == ["en", "id"]
    for language in SHIPPED:
        for kind in KINDS:
            for part in ("subject.txt", "body.txt", "body.html"):
                assert (BUILTIN / language / kind / part).is_file(), f"{language}/{kind}/{part}"


@pytest.mark.parametrize("language", SHIPPED)
@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_with_the_desk_context(kind: str, language: str) -> None:
    rendered = Renderer().render(kind, sample_context(), queue="support", language=language)

    assert "[ACME #42]" in rendered.subject and "\n" not in rendered.subject
    assert "Printer on fire" in rendered.subject
    assert REPLY_ABOVE_MARKER in rendered.text and REPLY_ABOVE_MARKER in rendered.html
    assert "[ACME #42]" in rendered.text + rendered.html or kind == "agent_reply"
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>") and rendered.html.rstrip().endswith("</html>")
    assert "{{" not in rendered.text + rendered.html + rendered.subject


def test_indonesian_is_really_indonesian() -> None:
    rendered = Renderer().render("ack", sample_context(), language="id")
    assert "Permintaan Anda telah kami terima" in rendered.subject
    assert "terima kasih" in rendered.text
    solved = Renderer().render("update", sample_context(), language="id")
    assert "selesai" in solved.subject and "menunggu balasan Anda" in solved.text


def test_a_missing_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    with pytest.raises(UndefinedError):
        Renderer().render("ack", {})
    override = tmp_path / "ack"
    override.mkdir()
    (override / "subject.txt").write_text("{{ tag }} {{ ticket.subjcet }}")
    with pytest.raises(UndefinedError, match="subjcet"):
        Renderer(tmp_path).render("ack", sample_context())
    # In production the built-in template stands in, so the ticket change still commits.
    fallback = Renderer(tmp_path).render_or_builtin("ack", sample_context())
    assert fallback.subject.startswith("[ACME #42] We have received your request")


def test_html_is_escaped_and_text_is_not() -> None:
    context = sample_context(subject="<script>alert(1)</script> & more", name='Eve "<b>"')
    rendered = Renderer().render("ack", context)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "&lt;b&gt;" in rendered.html
    assert "<script>alert(1)</script> & more" in rendered.text
    assert "<script>alert(1)</script> & more" in rendered.subject


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "ack").mkdir()
    (tmp_path / "ack" / "subject.txt").write_text("{{ ticket.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        Renderer(tmp_path).render("ack", sample_context())


def test_overrides_most_specific_first_then_builtin(tmp_path: Path) -> None:
    for folder, text in [("ack", "any queue"), ("billing/ack", "billing"), ("billing/id/ack", "billing id"),
                         ("id/ack", "any queue id")]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "subject.txt").write_text(f"{{{{ tag }}}} {text}")
    renderer = Renderer(tmp_path)

    def subject(queue: str, language: str) -> str:
        return renderer.render("ack", sample_context(), queue=queue, language=language).subject

    assert subject("billing", "id") == "[ACME #42] billing id"
    assert subject("billing", "en") == "[ACME #42] billing"
    assert subject("support", "id") == "[ACME #42] any queue id"
    assert subject("support", "en") == "[ACME #42] any queue"
    # body.txt was not overridden: the built-in one of the queue's language is used.
    assert renderer.source_of("ack", "body.txt", queue="billing", language="id").endswith("id/ack/body.txt")


def test_language_falls_back_to_the_base_language_then_english() -> None:
    assert languages("id-ID") == ["id-ID", "id", "en"]
    assert languages("en") == ["en"]
    renderer = Renderer()
    assert renderer.source_of("ack", "subject.txt", language="id-ID").endswith("id/ack/subject.txt")
    assert renderer.source_of("ack", "subject.txt", language="fr").endswith("en/ack/subject.txt")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind of mail 'akc'"):
        Renderer().render("akc", sample_context())


@pytest.mark.parametrize("language", SHIPPED)
def test_a_notification_of_a_mail_without_text_says_so(language: str) -> None:
    context = sample_context()
    context["message"] = {"text": ""}
    rendered = Renderer().render("notification", context, queue="support", language=language)
    placeholder = {"en": "(The mail has no text.)", "id": "(Email ini tidak berisi teks.)"}[language]
    assert placeholder in rendered.text and placeholder in rendered.html
