"""The automated-mail classifier, over a corpus of real-world-shaped messages."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage, Message
from email.policy import Policy
from email.utils import parseaddr
from pathlib import Path

import pytest
from flufl.bounce import all_failures

from maildesk.mail.classify import (
    AUTO_GENERATED,
    AUTO_REPLY,
    BOUNCE,
    DEFAULT_ROBOT_PATTERN,
    LIST,
    LOOP,
    NORMAL,
    Classification,
    classify,
    compile_robot_pattern,
    is_robot_address,
)

CORPUS = Path(__file__).resolve().parents[2] / "data" / "auto"
LOOP_IDS = ("support@example.com",)
OWN = ("desk.example.com",)
POLICIES = {"compat32": email.policy.compat32, "default": email.policy.default}


@dataclasses.dataclass(frozen=True)
class Expect:
    kind: str
    reason: str  # a fragment the reason must contain: the deciding header and value
    ids: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    permanent: bool = True


EXPECTED: dict[str, Expect] = {
    # auto-replies
    "exchange_ooo_en.eml": Expect(AUTO_REPLY, "Auto-Submitted: auto-generated"),
    "exchange_ooo_de.eml": Expect(AUTO_REPLY, "X-Auto-Response-Suppress: All"),
    "exchange_ooo_fr.eml": Expect(AUTO_REPLY, "Réponse automatique"),  # RFC 2047 subject
    "gmail_vacation.eml": Expect(AUTO_REPLY, "Auto-Submitted: auto-replied"),
    "zimbra_autoreply.eml": Expect(AUTO_REPLY, "Precedence: auto_reply"),
    "apple_auto.eml": Expect(AUTO_REPLY, "Auto-Submitted: auto-replied"),
    # bounces; postfix_dsn's own Message-ID is under desk.example.com (our MTA wrote it)
    "postfix_dsn.eml": Expect(BOUNCE, "report-type=delivery-status", ("<ack-12@desk.example.com>",),
                              ("j.doe@customer.example.net",)),
    "postfix_delayed.eml": Expect(BOUNCE, "report-type=delivery-status",
                                  ("<reply-1090.3@desk.example.com>",), ("m.rossi@lento.example",),
                                  permanent=False),
    "exchange_ndr.eml": Expect(BOUNCE, "report-type=delivery-status",
                               ("<reply-88.1@desk.example.com>",), ("anna.schmidt@contoso.example",)),
    "gmail_bounce.eml": Expect(BOUNCE, "report-type=delivery-status",
                               ("<update-31.2@desk.example.com>",), ("mike.customer@example.net",)),
    "qmail_bounce.eml": Expect(BOUNCE, "failed recipients: peter.miller@oldhost.example.net",
                               ("<ack-47@desk.example.com>",), ("peter.miller@oldhost.example.net",)),
    "exim_bounce.eml": Expect(BOUNCE, "X-Failed-Recipients: orders@shop.example.org", ("<update-9.4@desk.example.com>",),
                              ("orders@shop.example.org",)),
    "domino_bounce.eml": Expect(BOUNCE, "postmaster@legacy.example.org",
                                ("<reply-102.1@desk.example.com>",)),
    # other automated mail
    "monitoring_alert.eml": Expect(AUTO_GENERATED, "Auto-Submitted: auto-generated"),
    "read_receipt.eml": Expect(AUTO_GENERATED, "report-type=disposition-notification"),
    "mailing_list.eml": Expect(LIST, "List-Id: FooApp users <fooapp-users.lists.fooapp.example>"),
    "newsletter_bulk.eml": Expect(LIST, "Precedence: bulk"),
    "own_ack_loop.eml": Expect(LOOP, "X-Loop: support@example.com"),
    # people
    "human_new_request.eml": Expect(NORMAL, ""),
    "human_quotes_ooo.eml": Expect(NORMAL, ""),
    "human_auto_submitted_no.eml": Expect(NORMAL, ""),
    "human_reply_list_subject.eml": Expect(NORMAL, ""),
    "human_forwarded_bounce.eml": Expect(NORMAL, ""),
}


def load(name: str, policy: Policy = email.policy.default) -> Message:
    return email.message_from_bytes((CORPUS / name).read_bytes(), policy=policy)


def sender_of(message: Message) -> str:
    return parseaddr(str(message.get("From", "")))[1]


def run(message: Message, **kwargs: tuple[str, ...]) -> Classification:
    kwargs.setdefault("loop_ids", LOOP_IDS)
    kwargs.setdefault("own_domains", OWN)
    return classify(message, sender_of(message), **kwargs)


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name: str, policy: Policy) -> None:
    expect = EXPECTED[name]
    result = run(load(name, policy))
    assert result.kind == expect.kind, result.reason
    assert expect.reason in result.reason
    assert result.bounced_message_ids == expect.ids
    assert result.failed_recipients == expect.failed
    assert result.permanent is expect.permanent


def test_classification_is_frozen() -> None:
    result = run(load("human_new_request.eml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.kind = BOUNCE  # type: ignore[misc]


# -- loops ------------------------------------------------------------------------------------

def test_own_message_id_is_a_loop_without_x_loop() -> None:
    result = run(load("own_ack_loop.eml"), loop_ids=())
    assert (result.kind, result.reason) == (LOOP, "Message-ID: <ack-1101@desk.example.com> is ours")


def test_own_mail_is_not_a_loop_without_our_ids() -> None:
    assert run(load("own_ack_loop.eml"), loop_ids=(), own_domains=()).kind == AUTO_REPLY


def test_x_loop_comparison_ignores_case_and_brackets() -> None:
    message = load("human_new_request.eml")
    message["X-Loop"] = "<Support@Example.COM>"
    assert run(message).kind == LOOP


def test_message_id_in_a_subdomain_is_ours_but_a_lookalike_is_not() -> None:
    message = load("human_new_request.eml")
    message.replace_header("Message-ID", "<x1@eu.desk.example.com>")
    assert run(message, loop_ids=()).kind == LOOP
    message.replace_header("Message-ID", "<x1@notdesk.example.com>")
    assert run(message, loop_ids=()).kind == NORMAL


def test_our_ids_inside_a_bounce_do_not_make_it_a_loop() -> None:
    # The embedded headers carry X-Loop: support@example.com and our Message-ID.
    assert run(load("postfix_dsn.eml")).kind == BOUNCE


# -- bounces ----------------------------------------------------------------------------------

def test_without_own_domains_every_referenced_id_is_reported() -> None:
    result = run(load("exchange_ndr.eml"), own_domains=())
    assert result.bounced_message_ids == (
        "<reply-88.1@desk.example.com>", "<CAD9m2pQx7@mail.contoso.example>")


def test_forwarded_bounce_stays_human_although_flufl_would_match_it() -> None:
    message = load("human_forwarded_bounce.eml")
    assert any(all_failures(message))  # the heuristics alone would call this a bounce
    assert run(message).kind == NORMAL


def test_success_dsn_is_auto_generated_not_a_bounce() -> None:
    raw = (CORPUS / "postfix_dsn.eml").read_bytes().replace(b"Action: failed", b"Action: delivered")
    raw = raw.replace(b"Undelivered Mail Returned to Sender",
                      b"Successful Mail Delivery Report")
    # own_domains=(): this report's own Message-ID is under our domain (our MTA wrote it)
    result = run(email.message_from_bytes(raw, policy=email.policy.default), own_domains=())
    assert (result.kind, result.reason) == (
        AUTO_GENERATED, "multipart/report; report-type=delivery-status")


def test_mailer_daemon_with_a_delay_subject_is_temporary() -> None:
    message = make(Subject="Delivery Status Notification (Delay)", From="mailer-daemon@example.net")
    result = classify(message, "mailer-daemon@example.net")
    assert (result.kind, result.permanent) == (BOUNCE, False)


def test_mailer_daemon_without_a_bounce_subject_is_not_a_bounce() -> None:
    message = make(Subject="Your mailbox is almost full")
    assert classify(message, "MAILER-DAEMON@example.net").kind == NORMAL


def test_broken_multipart_report_does_not_crash() -> None:
    raw = (b"From: MAILER-DAEMON@example.net\nSubject: Undeliverable: hi\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
           b"no parts at all\n")
    for policy in POLICIES.values():
        message = email.message_from_bytes(raw, policy=policy)
        result = classify(message, "MAILER-DAEMON@example.net")
        assert (result.kind, result.failed_recipients) == (BOUNCE, ())


def test_bounce_without_from_header_does_not_crash() -> None:
    # One of flufl.bounce's detectors raises IndexError on a message without From:.
    raw = (CORPUS / "qmail_bounce.eml").read_bytes()
    raw = raw.replace(b"From: MAILER-DAEMON@mail.oldhost.example.net\n", b"")
    result = classify(email.message_from_bytes(raw, policy=email.policy.default), "")
    assert (result.kind, result.bounced_message_ids) == (BOUNCE, ("<ack-47@desk.example.com>",))


def test_large_attachments_are_not_handed_to_the_bounce_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    """flufl.bounce's regexes read every line of every part: 8 MiB of base64 took seconds."""
    from maildesk.mail import classify as module

    scanned: list[int] = []
    real_all_failures = module.all_failures

    def measuring_all_failures(msg):  # type: ignore[no-untyped-def]
        scanned.append(len(msg.as_string()))
        return real_all_failures(msg)

    monkeypatch.setattr(module, "all_failures", measuring_all_failures)
    message = make(Subject="Your invoice")
    message.add_attachment(bytes(range(256)) * 32_768, maintype="application", subtype="pdf",
                           filename="invoice.pdf")
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.compat32)
    assert classify(parsed, "noreply@shop.example").kind == NORMAL
    assert scanned and max(scanned) < 10_000


# -- auto-replies, notifications, lists: synthetic headers ------------------------------------

def make(**headers: str) -> EmailMessage:
    message = EmailMessage()
    headers = {"From": "Someone <someone@example.org>", "Message_ID": "<m1@example.org>", **headers}
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Hello\n")
    return message


@pytest.mark.parametrize(("headers", "kind", "reason"), [
    ({"Auto_Submitted": "auto-replied; owner-email=a@example.org"}, AUTO_REPLY,
     "Auto-Submitted: auto-replied; owner-email=a@example.org"),
    ({"Subject": "Auto: hello", "X_Autoreply": "yes"}, AUTO_REPLY, "X-Autoreply: yes"),
    ({"Subject": "Out of Office: hello", "Precedence": "bulk"}, AUTO_REPLY, "Precedence: bulk"),
    ({"Subject": "Out of office until Monday"}, NORMAL, "no automated-mail headers"),
    ({"Subject": "Question", "X_Auto_Response_Suppress": "All"}, NORMAL, "no automated-mail"),
    ({"Subject": "Question", "X_Autoreply": "yes"}, AUTO_GENERATED, "X-Autoreply: yes"),
    ({"Auto_Submitted": "auto-notified"}, AUTO_GENERATED, "Auto-Submitted: auto-notified"),
    ({"Auto_Submitted": "no", "List_Id": "<x.lists.example.org>"}, LIST, "List-Id: <x.lists"),
    ({"Precedence": "junk"}, AUTO_GENERATED, "Precedence: junk"),
    ({"List_Unsubscribe": "<mailto:leave@lists.example.org>"}, LIST, "List-Unsubscribe: <mailto"),
    ({"Mailing_List": "contact help@example.org; run by ezmlm"}, LIST, "Mailing-List: contact"),
    ({"Precedence": "list"}, LIST, "Precedence: list"),
])
def test_header_rules(headers: dict[str, str], kind: str, reason: str) -> None:
    result = classify(make(**headers), "someone@example.org")
    assert result.kind == kind
    assert reason in result.reason


def test_auto_reply_beats_list() -> None:
    message = make(Auto_Submitted="auto-replied", List_Id="<x.lists.example.org>")
    assert classify(message, "someone@example.org").kind == AUTO_REPLY


def test_long_header_values_are_shortened_in_the_reason() -> None:
    result = classify(make(List_Id="x" * 300), "someone@example.org")
    assert result.kind == LIST
    assert len(result.reason) < 100


# -- robot addresses --------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "", "<>", "MAILER-DAEMON@mx.example.net", "MAILER-DAEMON", "mailerdaemon@example.net",
    "postmaster@example.org", "noreply@example.com", "no-reply@accounts.example.com",
    "no_reply@example.com", "do-not-reply@example.com", "donotreply@example.com",
    "noreply-dmarc-support@example.com", "jira-noreply@example.atlassian.net",
    "bounce@example.com", "bounces@example.com", "bounce+a1b2c3@mail.example.com",
    "bounce-7731-2291@mailing.example", "users-bounces@lists.example.org",
    "users-bounces+alice=example.com@lists.example.org", "notifications@github.example",
])
def test_robot_addresses(address: str) -> None:
    assert is_robot_address(address)


@pytest.mark.parametrize("address", [
    "bruno@example.com", "bruno-reply@example.com", "noreen@example.com", "replies@example.com",
    "bouncer@club.example", "notification-team-lead@example.com", "postmasters-guild@example.org",
    "post@example.org", "support@example.com", "daemon.smith@example.com",
])
def test_human_addresses(address: str) -> None:
    assert not is_robot_address(address)


def test_custom_pattern_replaces_the_default() -> None:
    pattern = r"(?:alerts|robot)@(?:.+\.)?example\.com"
    assert is_robot_address("ALERTS@monitor.example.com", pattern)
    assert is_robot_address("robot@example.com", pattern)
    assert not is_robot_address("noreply@example.com", pattern)  # the default no longer applies
    assert not is_robot_address("robot@example.com.evil.example", pattern)  # fullmatch
    assert is_robot_address("", pattern)  # a null sender is always a robot


def test_default_pattern_is_exported() -> None:
    assert is_robot_address("noreply@example.com", DEFAULT_ROBOT_PATTERN)


def test_custom_pattern_is_case_insensitive_and_matches_the_whole_address() -> None:
    pattern = r"bot-[a-z]+@factory\.example"
    assert is_robot_address("Bot-Seven@FACTORY.example", pattern)
    assert is_robot_address("<bot-seven@factory.example>", pattern)
    assert not is_robot_address("robot-seven@factory.example", pattern)  # no match inside the address
    assert not is_robot_address("bot-seven@factory.example.org", pattern)


def test_a_pattern_is_compiled_once() -> None:
    assert compile_robot_pattern(r"once-[0-9]+@.*") is compile_robot_pattern(r"once-[0-9]+@.*")


@pytest.mark.parametrize("pattern", [r"(a)\1@.*", r"(?=x)x@.*", r"(?<!no)reply@.*", "(unclosed"])
def test_a_pattern_re2_refuses_is_a_value_error_with_its_reason(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"not a valid regular expression \(RE2 syntax\): \S"):
        compile_robot_pattern(pattern)


def test_catastrophic_backtracking_pattern_returns() -> None:
    # Python's re backtracks exponentially here and would never finish; RE2 is linear.
    assert not is_robot_address("a" * 50_000 + "!", r"(a+)+$")
    assert is_robot_address("a" * 50_000, r"(a+)+$")


def test_undecodable_header_bytes_in_an_address_do_not_break_matching() -> None:
    address = "noreply@ex\udcffample.com"  # a surrogate escape, as compat32 leaves an 8-bit byte
    assert is_robot_address(address)
    assert is_robot_address(address, r"noreply@.*")
    assert not is_robot_address("bruno@ex\udcffample.com")


def test_failed_recipients_read_by_flufl_bounce_are_storable(monkeypatch: pytest.MonkeyPatch) -> None:
    """flufl.bounce's heuristics can return any bytes of a broken bounce as an "address" (found by
    fuzzing: one with a NUL, which PostgreSQL cannot store in the reason)."""
    import maildesk.mail.classify as module

    monkeypatch.setattr(module, "all_failures", lambda message: (frozenset(), frozenset({b"a\x00b@x.example"})))
    raw = b"From: MAILER-DAEMON@mx.example\nSubject: Undeliverable: hi\nMessage-ID: <b@mx.example>\n\nfailed\n"
    result = classify(email.message_from_bytes(raw, policy=email.policy.compat32), "MAILER-DAEMON@mx.example")
    assert result.kind == BOUNCE and result.failed_recipients == ("ab@x.example",)
    assert "\x00" not in result.reason


def test_8bit_headers_are_read_in_the_body_charset_as_the_parser_reads_them() -> None:
    """A short Latin-1 header is too little for charset detection (it guessed a CJK charset)."""
    raw = ("From: bot@shop.example\nSubject: Abwesenheitsnotiz: März\nAuto-Submitted: auto-replied\n"
           "Content-Type: text/plain; charset=iso-8859-1\n\nIch bin im März nicht da.\n").encode("latin-1")
    assert _headers_of(raw, "Subject") == ["Abwesenheitsnotiz: März"]


def _headers_of(raw: bytes, name: str) -> list[str]:
    from maildesk.mail.classify import _headers

    return _headers(email.message_from_bytes(raw, policy=email.policy.compat32), name)
