"""Secrets printed by a command: passwords and OAuth2 access tokens.

Both the IMAP pollers (``password_command``, ``oauth2_token_command``) and
the outbound relay (``oauth2_token_command``) ask a command for a secret on
every connect, so a rotating token is always fresh. The command runs without
a shell (write ``sh -c '...'`` for one); its first output line is the secret.
Errors never contain the secret itself.
"""

from __future__ import annotations

import shlex
import subprocess


class CredentialError(Exception):
    """The command could not run, failed, or printed nothing."""


def from_command(command: str, *, timeout: float) -> str:
    """The first line ``command`` prints on stdout, stripped."""
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise CredentialError(f"could not run: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise CredentialError(f"exited with {done.returncode}" + (f": {detail[-1][:200]}" if detail else ""))
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if not lines or not lines[0].strip():
        raise CredentialError("printed nothing")
    return lines[0].strip()
