"""Exceptions that carry control flow between the stages of the pipeline.

A stage ends in one of three ways: done, try again later (TemporaryFailure:
the item stays where it is), or give up on this item (PermanentFailure:
the item is kept with its error for an admin to look at and retry).
"""


class MaildeskError(Exception):
    """Base class of maildesk's own errors."""


class ConfigError(MaildeskError):
    """The configuration file is missing, unreadable or invalid."""


class TemporaryFailure(MaildeskError):
    """Something outside us failed (database locked, network down): retry later."""


class PermanentFailure(MaildeskError):
    """This item can never succeed as it is: keep it with the error, move on."""


class UnusableInput(PermanentFailure):
    """The bytes offered as a message are not a mail at all (empty, not RFC 5322)."""
