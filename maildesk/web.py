"""A minimal HTTP/1.1 server on the daemon's asyncio loop, for ``/healthz`` and ``/metrics``.

It reads one request per connection (GET or HEAD, headers up to 8 KiB,
within 5 seconds), answers it from a route and closes: what a monitoring
probe or a Prometheus scrape needs, and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import structlog

log = structlog.get_logger(__name__)

MAX_HEAD = 8192
READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Awaitable[Response]]


def _plain(status: HTTPStatus) -> Response:
    return Response(status, "text/plain; charset=utf-8", f"{status.value} {status.phrase}\n".encode())


async def start(host: str, port: int, routes: dict[str, Route]) -> asyncio.Server:
    """Serve ``routes`` (path -> handler) on ``host:port`` until the server is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(_read_head(reader), READ_TIMEOUT)
            if method is None:
                response = _plain(HTTPStatus.BAD_REQUEST)
            elif method not in ("GET", "HEAD"):
                response = _plain(HTTPStatus.METHOD_NOT_ALLOWED)
            elif path.split("?", 1)[0] not in routes:
                response = _plain(HTTPStatus.NOT_FOUND)
            else:
                response = await routes[path.split("?", 1)[0]]()
            reason = HTTPStatus(response.status).phrase
            head = (f"HTTP/1.1 {response.status} {reason}\r\nContent-Type: {response.content_type}\r\n"
                    f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head if method == "HEAD" else head + response.body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:  # noqa: BLE001 - one bad request never stops the server
            log.exception("http request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_HEAD)


async def _read_head(reader: asyncio.StreamReader) -> tuple[str | None, str]:
    """The request's method and path (the headers are read and ignored); None for a malformed request."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None, ""
    return parts[0], parts[1]
