"""Fuzzing: hundreds of hostile mails (tests/hostile_mail.py) each end as done, on both databases.

A regression guard for what fuzzing found (see test_storable.py for each
case on its own): a mail must never fail, or wait forever, for what it
carries. Fixed seeds, so a failure names a mail that can be replayed.
"""

from __future__ import annotations

import pytest

from maildesk import spool
from tests.helpers import Desk
from tests.hostile_mail import mails

MAILS_PER_SEED = 300


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_hostile_mail_is_processed(desk: Desk, seed: int) -> None:
    not_done = []
    for number, (raw, notify) in enumerate(mails(seed, MAILS_PER_SEED)):
        outcome = desk.ingest(raw, notify=notify)
        if outcome.state != spool.DONE:
            first_line = (outcome.detail or "").partition("\n")[0]
            not_done.append(f"mails({seed}, ...) #{number}: {outcome.state}: {first_line}")
    assert not_done == []
