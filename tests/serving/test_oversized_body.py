"""A too-large body gets a readable 413, not a connection reset (raw sockets against a real server)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from serving_support import TEST_TOKEN, Bundle, Server, read_http_response

LIMIT = 100_000  # the server's --max-body-bytes here, so the bodies below are quick to send
NAME = "housing-price"


@pytest.fixture(scope="module")
def small_limit_server(
    bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("limits") / "server.log"
    server = Server(bundles["housing-v1"].path, "--max-body-bytes", str(LIMIT), log_path=log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _exchange(server: Server, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request as http.client, requests or urllib do: the whole body, then read the answer.

    Such a client gives up with a connection error when a send fails, so a server that
    answers and closes before the body is in loses its 413: the send must succeed.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError) as exc:
            pytest.fail(f"the server reset the connection after {sent} body bytes: {exc!r}")
        return read_http_response(sock)


def _head(path: str, length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{size}{extra}\r\n"
    ).encode()


@pytest.mark.parametrize("size", [LIMIT + 1, 20 * LIMIT, 40 * 1024 * 1024])
@pytest.mark.parametrize("connection", ["close", "keep-alive"])
def test_413_is_readable_after_a_declared_oversized_body(
    small_limit_server: Server, size: int, connection: str
) -> None:
    chunks = [b" " * min(1 << 20, size - i) for i in range(0, size, 1 << 20)]
    head = _head(f"/v2/models/{NAME}/infer", size, f"Connection: {connection}\r\n")
    answer = _exchange(small_limit_server, head, chunks)
    # Before: with "Connection: close" (urllib's default) the server answered at the header and
    # closed with the body unread: the client's next send failed with EPIPE/ECONNRESET, and a
    # client such as http.client reported a connection error, never the 413.
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"exceeds the limit" in answer and b"connection: close" in answer.lower()


def test_413_is_readable_after_an_oversized_chunked_body(small_limit_server: Server) -> None:
    piece = b" " * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunks = [chunk] * (30 * LIMIT // len(piece)) + [b"0\r\n\r\n"]
    head = _head(f"/v2/models/{NAME}/infer", None, "Connection: close\r\n")
    answer = _exchange(small_limit_server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_expect_100_continue_gets_the_413_before_sending(small_limit_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", small_limit_server.port), timeout=20) as sock:
        sock.sendall(_head(f"/v2/models/{NAME}/infer", 10 * LIMIT, "Expect: 100-continue\r\n"))
        start = time.monotonic()
        answer = read_http_response(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - start < 5  # at once, without the body


def test_413_on_the_load_endpoint_too(small_limit_server: Server) -> None:
    size = 2 * 1024 * 1024  # the load endpoint takes 64 KiB
    auth = f"Authorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n"
    answer = _exchange(
        small_limit_server, _head(f"/v2/repository/models/{NAME}/load", size, auth), [b" " * size]
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope/infer", b"404"),  # refused before the body is read
        (f"/v2/repository/models/{NAME}/load", b"401"),  # no token
    ],
)
def test_early_refusals_are_readable_too(small_limit_server: Server, path: str, status: bytes) -> None:
    size = 2 * 1024 * 1024
    answer = _exchange(small_limit_server, _head(path, size, "Connection: close\r\n"), [b" " * size])
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
