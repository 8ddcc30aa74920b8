"""Agents: reply tokens and addresses, who counts as an agent, trusted Authentication-Results."""

from __future__ import annotations

from pathlib import Path

import pytest

from maildesk.desk.agents import (
    MAX_TICKET_ID, NOTIFICATION, REPLY_ADDRESS, TOKEN_LENGTH, SecretError, agent_reply_address,
    authentication_results_pass, identify, new_secret, parse_agent_reply_address, parse_authentication_results,
    create_secret_file, read_secret_file, reply_token, verify,
)

SECRET = b"s" * 32
BOB, CAROL = "bob@example.com", "carol@example.com"


# --- tokens ---------------------------------------------------------------------------------------

def test_a_token_is_lower_case_base32_of_100_bits_and_stable() -> None:
    token = reply_token(SECRET, 42, BOB)
    assert len(token) == TOKEN_LENGTH == 20 and token == token.lower()
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert reply_token(SECRET, 42, "Bob@Example.COM ") == token
    assert verify(SECRET, 42, BOB, token)


def test_a_token_of_ticket_a_proves_nothing_on_ticket_b() -> None:
    assert not verify(SECRET, 43, BOB, reply_token(SECRET, 42, BOB))


def test_a_token_of_another_agent_proves_nothing() -> None:
    assert not verify(SECRET, 42, CAROL, reply_token(SECRET, 42, BOB))


def test_a_token_under_another_secret_proves_nothing() -> None:
    assert not verify(b"t" * 32, 42, BOB, reply_token(SECRET, 42, BOB))


def test_a_tampered_token_proves_nothing() -> None:
    token = reply_token(SECRET, 42, BOB)
    tampered = ("b" if token[0] != "b" else "c") + token[1:]
    for bad in (tampered, token[:-1], token + "a", "", "é" * 20, token.replace(token[3], "1")):
        assert not verify(SECRET, 42, BOB, bad), bad


def test_an_upper_cased_token_still_proves_it() -> None:
    # Some mail systems fold the case of local parts; the token is compared case-insensitively.
    assert verify(SECRET, 42, BOB, reply_token(SECRET, 42, BOB).upper())


@pytest.mark.parametrize("ticket", [0, -1, MAX_TICKET_ID + 1, True])
def test_impossible_ticket_numbers_are_refused(ticket: int) -> None:
    with pytest.raises(ValueError):
        reply_token(SECRET, ticket, BOB)
    assert not verify(SECRET, ticket, BOB, "a" * 20)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        reply_token(b"", 1, BOB)


# --- secrets --------------------------------------------------------------------------------------

def test_new_secrets_are_random_32_bytes() -> None:
    assert len(new_secret()) == 32 and new_secret() != new_secret()


def test_read_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 32)
    assert read_secret_file(path) == b"x" * 32
    with pytest.raises(SecretError, match="does not exist"):
        read_secret_file(tmp_path / "missing")
    path.write_bytes(b"short")
    with pytest.raises(SecretError, match="holds 5 bytes; at least 16"):
        read_secret_file(path)
    with pytest.raises(SecretError, match="cannot read") as raised:
        read_secret_file(tmp_path)  # a directory
    assert "\n" not in str(raised.value)


def test_create_secret_file_writes_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    secret = create_secret_file(path)
    assert len(secret) == 32 and read_secret_file(path) == secret
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SecretError, match="exists already"):
        create_secret_file(path)
    assert read_secret_file(path) == secret
    with pytest.raises(SecretError, match="cannot create"):
        create_secret_file(tmp_path / "missing-dir" / "secret")


# --- addresses ------------------------------------------------------------------------------------

def test_agent_reply_address_round_trips() -> None:
    token = reply_token(SECRET, 42, BOB)
    address = agent_reply_address("support@acme.example", 42, token)
    assert address == f"support+42.{token}@acme.example"
    assert parse_agent_reply_address(address) == ("support@acme.example", 42, token)
    assert parse_agent_reply_address(address.upper()) == ("support@acme.example", 42, token)
    assert parse_agent_reply_address(f"<{address}>") == ("support@acme.example", 42, token)


def test_an_existing_plus_tag_of_the_support_address_is_dropped() -> None:
    token = reply_token(SECRET, 7, BOB)
    assert agent_reply_address("support+billing@acme.example", 7, token) == f"support+7.{token}@acme.example"


def test_agent_reply_address_refuses_what_it_cannot_build() -> None:
    token = reply_token(SECRET, 7, BOB)
    with pytest.raises(ValueError, match="not a support address"):
        agent_reply_address("no-at-sign", 7, token)
    with pytest.raises(ValueError, match="not a reply token"):
        agent_reply_address("support@acme.example", 7, "short")
    with pytest.raises(ValueError, match="too long"):
        agent_reply_address("a" * 40 + "@acme.example", MAX_TICKET_ID, token)
    assert agent_reply_address("a" * 32 + "@acme.example", MAX_TICKET_ID, token)


@pytest.mark.parametrize("address", [
    "support@acme.example",
    "support+billing@acme.example",
    "support+42@acme.example",
    "support+42.@acme.example",
    "support+.abcdefghijklmnopqrst@acme.example",
    "support+042.abcdefghijklmnopqrst@acme.example",
    "support+0.abcdefghijklmnopqrst@acme.example",
    f"support+{MAX_TICKET_ID + 1}.abcdefghijklmnopqrst@acme.example",
    "support+99999999999999999999.abcdefghijklmnopqrst@acme.example",
    "support+42.abcdefghijklmnopqrs@acme.example",
    "support+42.abcdefghijklmnopqrstu@acme.example",
    "support+42.abcdefghijklmnopqrs1@acme.example",
    "support+billing+42.abcdefghijklmnopqrst@acme.example",
    "+42.abcdefghijklmnopqrst@acme.example",
    "support+42.abcdefghijklmnopqrst@",
    "support+42.abcdefghijklmnopqrst@acme..example",
    "support+42.abcdefghijklmnopqrst",
    "sup port+42.abcdefghijklmnopqrst@acme.example",
    "support+42.abcdefghijklmnopqrst@acme.example\nBcc: x@y",
    "support+４２.abcdefghijklmnopqrst@acme.example",
    "a" * 400 + "+42.abcdefghijklmnopqrst@acme.example",
    "",
])
def test_malformed_reply_addresses_are_refused(address: str) -> None:
    assert parse_agent_reply_address(address) is None


def test_parse_never_raises_on_non_strings() -> None:
    assert parse_agent_reply_address(None) is None  # type: ignore[arg-type]


# --- identify -------------------------------------------------------------------------------------

def _identify(**overrides: object):
    arguments: dict = dict(sender=BOB, agents=[BOB, CAROL], recipients=[], referenced_ids=[], notifications={},
                           secret=SECRET)
    arguments.update(overrides)
    return identify(**arguments)


def test_an_agent_replying_to_their_reply_address_is_an_agent() -> None:
    address = agent_reply_address("support@acme.example", 42, reply_token(SECRET, 42, BOB))
    identity = _identify(sender="Bob@Example.com", recipients=["other@x.example", address])
    assert identity.is_agent and identity.agent == BOB and identity.ticket_id == 42
    assert identity.proof == REPLY_ADDRESS


def test_an_agent_answering_a_notification_sent_to_them_is_an_agent() -> None:
    identity = _identify(referenced_ids=["<n1@acme>", "<n2@acme>"], notifications={"<n2@acme>": (42, BOB)})
    assert identity.is_agent and identity.ticket_id == 42 and identity.proof == NOTIFICATION


def test_a_notification_sent_to_another_agent_proves_nothing() -> None:
    identity = _identify(referenced_ids=["<n2@acme>"], notifications={"<n2@acme>": (42, CAROL)})
    assert not identity.is_agent and "does not answer" in identity.reason


def test_another_agents_reply_address_proves_nothing() -> None:
    address = agent_reply_address("support@acme.example", 42, reply_token(SECRET, 42, CAROL))
    assert not _identify(recipients=[address]).is_agent


def test_a_token_of_ticket_a_on_ticket_b_proves_nothing() -> None:
    token_a = reply_token(SECRET, 41, BOB)
    assert not _identify(recipients=[f"support+42.{token_a}@acme.example"]).is_agent
    # A valid proof for ticket 41 does not make the mail an agent's on ticket 42.
    good_41 = agent_reply_address("support@acme.example", 41, token_a)
    assert not _identify(recipients=[good_41], ticket_id=42).is_agent
    assert not _identify(referenced_ids=["<n@a>"], notifications={"<n@a>": (41, BOB)}, ticket_id=42).is_agent
    assert _identify(recipients=[good_41], ticket_id=41).is_agent


def test_a_stranger_is_never_an_agent_whatever_they_prove() -> None:
    address = agent_reply_address("support@acme.example", 42, reply_token(SECRET, 42, "eve@evil.example"))
    identity = _identify(sender="eve@evil.example", recipients=[address])
    assert not identity.is_agent and "not a configured agent" in identity.reason


def test_an_agent_without_proof_is_not_an_agent() -> None:
    assert not _identify(recipients=["support@acme.example"]).is_agent


# --- Authentication-Results -----------------------------------------------------------------------

OURS = "mx.acme.example"


def _ar(*values: str) -> list[tuple[str, str]]:
    return [("Received", "from x by y"), *(("Authentication-Results", value) for value in values),
            ("From", BOB)]


def test_dmarc_pass_for_the_agents_domain_passes() -> None:
    ok, reason = authentication_results_pass(
        _ar(f"{OURS}; spf=pass smtp.mailfrom=example.com; dkim=fail header.d=other.example; "
            "dmarc=pass (p=reject dis=none) header.from=example.com"), OURS, "example.com")
    assert ok and "dmarc=pass" in reason


def test_dkim_pass_of_the_domain_or_a_subdomain_passes_but_not_a_parent() -> None:
    assert authentication_results_pass(_ar(f"{OURS}; dkim=pass header.d=example.com header.s=sel"),
                                       OURS, "example.com")[0]
    assert authentication_results_pass(_ar(f"{OURS}; dkim=pass header.d=mail.example.com"), OURS, "example.com")[0]
    assert authentication_results_pass(_ar(f"{OURS}; dkim=pass header.i=@Example.COM"), OURS, "example.com")[0]
    assert not authentication_results_pass(_ar(f"{OURS}; dkim=pass header.d=example.com"), OURS, "eu.example.com")[0]
    assert not authentication_results_pass(_ar(f"{OURS}; dkim=pass header.d=badexample.com"), OURS, "example.com")[0]


def test_fail_results_do_not_pass() -> None:
    ok, reason = authentication_results_pass(
        _ar(f"{OURS}; dkim=fail header.d=example.com; dmarc=fail header.from=example.com"), OURS, "example.com")
    assert not ok and "dkim=fail" in reason and "dmarc=fail" in reason
    assert not authentication_results_pass(_ar(f"{OURS}; dmarc=pass header.from=other.example"),
                                           OURS, "example.com")[0]
    assert not authentication_results_pass(_ar(f"{OURS}; none"), OURS, "example.com")[0]


def test_a_forged_header_below_the_real_one_is_ignored() -> None:
    headers = _ar(f"{OURS}; dmarc=fail header.from=example.com",
                  f"{OURS}; dmarc=pass header.from=example.com")
    ok, reason = authentication_results_pass(headers, OURS, "example.com")
    assert not ok and "dmarc=fail" in reason


def test_a_foreign_authserv_id_is_ignored() -> None:
    headers = _ar("mx.evil.example; dmarc=pass header.from=example.com",
                  f"{OURS}; dmarc=fail header.from=example.com")
    assert not authentication_results_pass(headers, OURS, "example.com")[0]
    ok, reason = authentication_results_pass(_ar("mx.evil.example; dmarc=pass header.from=example.com"),
                                             OURS, "example.com")
    assert not ok and "no Authentication-Results header of mx.acme.example" in reason
    # A foreign header above ours does not hide ours.
    headers = _ar("relay.internal; dmarc=fail", f"{OURS}; dmarc=pass header.from=example.com")
    assert authentication_results_pass(headers, OURS, "example.com")[0]


def test_comments_and_quoted_strings_cannot_smuggle_a_pass() -> None:
    tricky = [
        f"{OURS}; dkim=fail (dkim=pass header.d=example.com) header.d=example.com",
        f'{OURS}; dkim=fail reason="; dkim=pass header.d=example.com"',
        f"{OURS} (; dmarc=pass header.from=example.com); dmarc=fail header.from=example.com",
        f"({OURS}) {OURS}; dmarc=fail header.from=example.com",
        f"{OURS}; dmarc=pass (nested (comment) header.from=example.com) header.from=other.example",
    ]
    for value in tricky:
        assert not authentication_results_pass(_ar(value), OURS, "example.com")[0], value


def test_the_tokenizer_reads_versions_comments_quotes_and_case() -> None:
    authserv, results = parse_authentication_results(
        'MX.Acme.Example 1; (lead comment) DKIM/1=Pass (good) header.d="example.com" header.b=abc;'
        ' dmarc=pass header.from=example.com; garbage; ;')
    assert authserv == "mx.acme.example"
    assert [(r.method, r.result) for r in results] == [("dkim", "pass"), ("dmarc", "pass")]
    assert results[0].properties == {"header.d": "example.com", "header.b": "abc"}
    lower_case_name = [("authentication-results", 'MX.ACME.EXAMPLE; dkim=pass header.d="example.com"')]
    assert authentication_results_pass(lower_case_name, OURS, "Example.com")[0]


@pytest.mark.parametrize("value", ["", ";", "(unterminated", '"unterminated', "=;=", "x; dkim=", "x; =pass",
                                   "x; dkim=pass header.d=", "\x00\x01;;;", "(" * 1000, "x; dkim/=pass"])
def test_garbage_never_raises(value: str) -> None:
    ok, reason = authentication_results_pass([("Authentication-Results", value)], OURS, "example.com")
    assert ok is False and reason


def test_base64_values_and_spaced_equals_signs_are_read_whole() -> None:
    value = (f"{OURS}; dkim=pass (2048-bit key) header.d=example.com header.s=s1 header.b=Ab/C+d=="
             " header.a=rsa-sha256; dmarc = pass header.from = example.com")
    authserv, results = parse_authentication_results(value)
    assert results[0].properties["header.b"] == "Ab/C+d==" and results[0].properties["header.a"] == "rsa-sha256"
    assert (results[1].method, results[1].result, results[1].properties) == ("dmarc", "pass",
                                                                             {"header.from": "example.com"})
    assert authentication_results_pass(_ar(value), OURS, "example.com")[0]
    # A comment ends a value: what follows it is the next property, not more of the value.
    _, results = parse_authentication_results(f"{OURS}; dkim=pass header.d=example.com(x)header.s=s1")
    assert results[0].properties == {"header.d": "example.com", "header.s": "s1"}
