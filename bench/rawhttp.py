"""A minimal keep-alive HTTP/1.1 client over one socket that streams request bodies.

Bodies go out with ``socket.sendfile`` (zero-copy from the page cache), so the client
costs next to nothing and the figures measure the server. Responses are read fully
(status, headers, a ``Content-Length`` body).
"""

from __future__ import annotations

import socket
from typing import BinaryIO
from urllib.parse import urlsplit


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Connection:
    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        body: bytes = b"",
        file: BinaryIO | None = None,
        offset: int = 0,
        count: int = 0,
        prefix: bytes = b"",
        suffix: bytes = b"",
    ) -> Response:
        """Send one request; the body is ``prefix + file[offset:offset+count] + suffix``, or
        ``body``."""
        if path.startswith("http"):
            path = urlsplit(path).path
        length = len(body) + len(prefix) + len(suffix) + (count if file is not None else 0)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + body + prefix)
        if file is not None and count:
            sent = self.sock.sendfile(file, offset, count)
            if sent != count:
                raise OSError(f"sendfile sent {sent} of {count} bytes")
        if suffix:
            self.sock.sendall(suffix)
        return self._read_response(method)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buf += data

    def _read_response(self, method: str) -> Response:
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        first, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(first.split()[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = (
            0
            if method == "HEAD" or status in (204, 304)
            else int(headers.get("content-length", "0"))
        )
        while len(self._buf) < size:
            self._fill()
        body, self._buf = self._buf[:size], self._buf[size:]
        return Response(status, headers, body)
