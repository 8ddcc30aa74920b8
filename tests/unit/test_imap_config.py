"""The [[imap]] config section: credentials, names, addresses; and the reconnect backoff."""

from __future__ import annotations

import pytest

from maildesk.config import masked, parse_config
from maildesk.errors import ConfigError
from maildesk.receive.imap import backoff_delay

BOX = {"name": "support", "host": "imap.example.com", "username": "support@example.com"}


def test_a_mailbox_needs_exactly_one_credential() -> None:
    with pytest.raises(ConfigError) as none:
        parse_config({"imap": [BOX]})
    assert "imap.0: mailbox 'support': give exactly one of password, password_file" in str(none.value)
    assert "(found: none)" in str(none.value)
    with pytest.raises(ConfigError) as two:
        parse_config({"imap": [{**BOX, "password": "x", "password_command": "pass show imap"}]})
    assert "(found: password, password_command)" in str(two.value)


def test_defaults_and_masking() -> None:
    config = parse_config({"imap": [{**BOX, "password": "hunter2"}]})
    box = config.imap[0]
    assert (box.tls, box.port, box.folder, box.after, box.idle) == ("ssl", None, "INBOX", "move", True)
    assert box.idle_timeout_seconds == 5 * 60 and box.import_existing
    assert "hunter2" not in str(masked(config))


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([{**BOX, "password": "x"}, {**BOX, "password": "y"}], "mailbox name 'support' used twice"),
        ([{**BOX, "password": "x", "support_address": "sales@example.com"}],
         "support_address sales@example.com is not in [[addresses]]"),
        ([{**BOX, "password": "x", "after": "archive"}], "imap.0.after: Input should be 'move', 'flag' or 'delete'"),
        ([{**BOX, "password": "x", "idle_timeout_seconds": 1800}], "imap.0.idle_timeout_seconds"),
        ([{**BOX, "password": "x", "pasword": "y"}], "imap.0.pasword: unknown key"),
    ],
)
def test_mistakes_are_named(boxes: list[dict], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        parse_config({"addresses": [{"address": "support@example.com"}], "imap": boxes})
    assert message in str(caught.value)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    assert backoff_delay(1, 1, 300, rand=lambda: 0.0) == 0.5
    assert backoff_delay(1, 1, 300, rand=lambda: 1.0) == 1.0
    assert backoff_delay(4, 1, 300, rand=lambda: 1.0) == 8.0
    assert backoff_delay(30, 1, 300, rand=lambda: 1.0) == 300.0
    assert 150 <= backoff_delay(30, 1, 300) <= 300
