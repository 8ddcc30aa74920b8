"""The IMAP client maildesk connects with: imapclient's, made safe for IDLE.

imapclient's ``idle_check`` waits for the socket to become readable. But
imaplib reads the connection through a buffered file, so when the server
sends "+ idling" and "* 2 EXISTS" in one packet, the EXISTS line is already
in that buffer when ``idle_check`` starts waiting: the socket never becomes
readable again and the new message sits unseen until the next IDLE round.
``IdleSafeIMAPClient`` counts what is buffered as ready to read.
"""

from __future__ import annotations

import select
import socket
from typing import Any

from imapclient import IMAPClient


class IdleSafeIMAPClient(IMAPClient):
    """An ``IMAPClient`` whose ``idle_check`` also sees responses already read ahead."""

    def _poll_socket(self, sock: socket.socket, timeout: float | None = None) -> Any:
        if self._input_buffered():
            return [(sock.fileno(), select.POLLIN)]
        return super()._poll_socket(sock, timeout)

    def _select_poll_socket(self, sock: socket.socket, timeout: float | None = None) -> Any:
        if self._input_buffered():
            return [sock]
        return super()._select_poll_socket(sock, timeout)

    def _input_buffered(self) -> bool:
        """Is a response line waiting in imaplib's buffer (or in TLS's)?

        Called by ``idle_check`` while the socket is non-blocking, so the
        peek returns what is buffered without ever waiting for the network.
        """
        try:
            return bool(self._imap.file.peek(1))
        except OSError:  # ssl.SSLWantReadError and friends: nothing buffered
            return False
