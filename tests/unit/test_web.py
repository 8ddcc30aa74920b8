"""The minimal HTTP server behind /healthz and /metrics: a route answers, a
wrong path is 404, a wrong method 405, garbage 400, HEAD has no body."""

from __future__ import annotations

import asyncio

from maildesk import web


async def ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


def test_routes_methods_and_bad_requests() -> None:
    async def main() -> list[bytes]:
        async def hello() -> web.Response:
            return web.Response(200, "text/plain", b"hello")

        server = await web.start("127.0.0.1", 0, {"/hello": hello})
        port = server.sockets[0].getsockname()[1]
        try:
            return [await ask(port, request) for request in (
                b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"HEAD /hello HTTP/1.1\r\n\r\n",
                b"GET /nope HTTP/1.1\r\n\r\n",
                b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                b"garbage\r\n\r\n",
            )]
        finally:
            server.close()
            await server.wait_closed()

    ok, head, missing, post, garbage = asyncio.run(main())
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nhello")
    assert b"Content-Length: 5\r\n" in head and head.endswith(b"\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 404 ")
    assert post.startswith(b"HTTP/1.1 405 ")
    assert garbage.startswith(b"HTTP/1.1 400 ")
