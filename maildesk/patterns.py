"""Patterns from the admin's config, compiled with RE2 (google-re2).

The config is read at every start, so this module stays light: the config
validates a pattern by compiling it exactly as the code that uses it will.
"""

from __future__ import annotations

import functools

import re2


def compile_pattern(pattern: str) -> re2._Regexp:
    """``pattern`` compiled with RE2, case-insensitive: matching takes linear time.

    Patterns come from the admin's config and the text from the internet, so a
    backtracking engine could hang on crafted input (ReDoS).  RE2 has no
    backreferences or look-around; ``(?-i)`` makes (part of) a pattern
    case-sensitive.  It searches str or UTF-8 bytes alike (bytes spare the
    wrapper encoding the text at every search).  A pattern RE2 refuses raises
    ``ValueError`` whose message is RE2's reason.
    """
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the caller reports the reason; RE2 would also print it to stderr
    options.never_capture = True  # callers ask whether it matches, never for groups: RE2 can skip finding them
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(reason) from None


@functools.lru_cache(maxsize=16)
def compile_robot_pattern(pattern: str) -> re2._Regexp:
    """``pattern`` compiled by ``compile_pattern``, for whole robot addresses."""
    try:
        return compile_pattern(pattern)
    except ValueError as exc:
        raise ValueError(f"not a valid regular expression (RE2 syntax): {exc}") from None
