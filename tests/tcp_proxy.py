"""A loopback TCP proxy for client tests: counts connections, the most open at once, and
the tus requests that pass through it (by their request lines)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading

from tests.servers import free_port

REQUEST_LINE = re.compile(rb"(POST|PATCH|HEAD|OPTIONS|GET) (/api/sessions[^ ]*) HTTP/1\.1\r\n")


class CountingProxy:
    """``drop_first_created``: the first ``201 Created`` reply to a tus creation (a POST to
    ``.../files``) never reaches the client (its connection is cut instead), as when a reply
    is lost after the server acted."""

    def __init__(self, target_port: int, *, drop_first_created: bool = False) -> None:
        self.target_port = target_port
        self.drop_first_created = drop_first_created
        self.dropped = 0
        self.port = free_port()
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        assert self.ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self.ready.set()
        self.loop.run_forever()
        server.close()
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        server_w: asyncio.StreamWriter | None = None
        asked: list[tuple[str, str]] = []  # this connection's requests, answered in order
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(
                self._pipe(client_r, server_w, asked, inspect=True),
                self._pipe(server_r, client_w, asked, inspect=False),
                return_exceptions=True,
            )
        finally:
            self.open -= 1
            for writer in (client_w, server_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        asked: list[tuple[str, str]],
        *,
        inspect: bool,
    ) -> None:
        tail = b""
        try:
            while data := await reader.read(65536):
                if not inspect and data.startswith(b"HTTP/1.1 ") and asked:
                    method, path = asked.pop(0)
                    creation = method == "POST" and path.endswith("/files")
                    lose = self.drop_first_created and not self.dropped and creation
                    if lose and data.startswith(b"HTTP/1.1 201 "):
                        self.dropped += 1
                        return  # the finally below closes this side; the client sees a reset
                if inspect:
                    window = tail + data
                    for match in REQUEST_LINE.finditer(window):
                        if match.end() > len(tail):  # not already counted
                            seen = (match.group(1).decode(), match.group(2).decode())
                            self.requests.append(seen)
                            asked.append(seen)
                    tail = window[-200:]
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
