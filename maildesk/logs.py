"""Logging set-up: structlog, JSON lines under systemd, readable on a terminal.

Every line about a message carries its ``inbound_id``, ``message_id`` and
``ticket_id`` (bound by the code that knows them), so one grep follows a
message through the pipeline.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Configure structlog to write to stderr; ``auto`` picks console on a TTY, else JSON."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.EventRenamer("msg") if use_json else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # flufl.bounce announces every detector it runs at INFO; only its problems matter to us.
    logging.getLogger("flufl.bounce").setLevel(logging.WARNING)


def _identity(_logger: object, _name: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    return event_dict
