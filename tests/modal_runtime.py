"""The app as a Modal web container runs it, without an account.

Modal does not serve an ``@modal.asgi_app()`` with uvicorn. Its container calls
``modal._runtime.asgi.asgi_app_wrapper(app, container_io_manager)``, which returns

- ``fn(scope)``: an async generator per request. It reads the request's messages from
  ``container_io_manager.get_data_in`` and yields what the app ``send``s; the container
  pushes those into a 1024-message queue drained by
  ``_ContainerIOManager.generator_output_sender`` into ``put_data_out`` (Modal's servers,
  then the client);
- a ``LifespanManager``, whose ``background_task``/``lifespan_startup`` run before the first
  input and ``lifespan_shutdown`` when the container stops (``lifecycle_asgi``).

:class:`ModalWebContainer` runs the app through exactly those pieces, Modal's own code, and
puts a real uvicorn on a loopback port in front of them only as the stand-in for Modal's
proxy: each connection's scope and messages are converted to Modal's wire format
(``DATA_FORMAT_ASGI`` protobuf) and back, so the app sees the scope Modal gives it (no
``root_path``, no ``server``, no transport behind ``send``) and every message it sends must
survive Modal's serialization. Only the cloud RPCs (``get_data_in``, ``put_data_out``) are
replaced, by the real socket.

:class:`CrashLosingVolume` is the staging volume: a folder mounted as the data dir that
keeps only what was committed. ``crash()`` stops the container without the lifespan
shutdown and rolls the folder back to the last commit, as a killed or preempted container
loses every write it did not commit. A graceful ``stop()`` runs the lifespan shutdown and
then commits, as Modal does when a container exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import uvicorn
from modal._runtime import asgi as modal_asgi
from modal._runtime import execution_context
from modal._runtime.container_io_manager import _ContainerIOManager
from modal._serialization import deserialize_data_format, serialize_data_format
from modal_proto import api_pb2

from tests.servers import free_port
from tests.test_volume_store_contract import FakeVolume, _SyncAndAio

ASGI = api_pb2.DATA_FORMAT_ASGI
START_TIMEOUT_S = 30.0


def over_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    """A message as it arrives on the other side of Modal (protobuf there and back)."""
    raw = serialize_data_format(message, ASGI)
    decoded: dict[str, Any] = deserialize_data_format(raw, ASGI, None)
    return decoded


class CrashLosingVolume(FakeVolume):
    """A mounted ``modal.Volume`` (the staging volume): uncommitted writes die in a crash."""

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name, root)
        root.mkdir(parents=True, exist_ok=True)
        self._snapshot = root.with_name(root.name + ".committed")
        self.dead = False
        self.died = threading.Event()
        self._armed: str | None = None
        self._take_snapshot()
        self.commit = _SyncAndAio(self._commit)

    def die_at_next_commit(self, when: str) -> None:
        """Stop committing at the next commit: ``"before"`` it (it keeps nothing new) or
        ``"after"`` it; ``died`` is set. Then ``ModalWebContainer.crash()`` the container:
        what happened in between is lost, as in a crash at exactly that point."""
        assert when in ("before", "after")
        self._armed = when

    def _take_snapshot(self) -> None:
        tmp = self._snapshot.with_name(self._snapshot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.root, tmp, symlinks=True)
        shutil.rmtree(self._snapshot, ignore_errors=True)
        tmp.rename(self._snapshot)

    def _commit(self) -> None:
        if self.dead:  # a container that crashed commits nothing any more
            raise RuntimeError("the container is gone")
        armed, self._armed = self._armed, None
        if armed == "before":
            self.dead = True
            self.died.set()
            raise RuntimeError("the container is gone")
        self._take_snapshot()
        self.commits += 1
        if armed == "after":
            self.dead = True
            self.died.set()

    def lose_uncommitted(self) -> None:
        """What the next container mounts after a crash: the last commit, nothing newer."""
        shutil.rmtree(self.root)
        shutil.copytree(self._snapshot, self.root, symlinks=True)
        self.dead = False
        self.died.clear()

    def committed_file(self, relative: str) -> Path:
        return self._snapshot / relative


class _Aio:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.aio = fn


class _ContainerIO:
    """The two RPCs of ``_ContainerIOManager`` a web input uses, served by the real socket."""

    def __init__(self) -> None:
        self._receives: dict[str, Callable[[], Any]] = {}
        self._sends: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.get_data_in = _Aio(self._get_data_in)
        self.sent: list[dict[str, Any]] = []  # every message that reached a client

    def open(self, call_id: str, receive: Any, send: Any) -> None:
        self._receives[call_id] = receive
        self._sends[call_id] = send

    def close(self, call_id: str) -> None:
        self._receives.pop(call_id, None)
        self._sends.pop(call_id, None)

    async def _get_data_in(
        self, function_call_id: str, attempt_token: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        receive = self._receives[function_call_id]
        while True:
            message = await receive()
            yield over_the_wire(message)
            if message["type"] in ("http.disconnect", "websocket.disconnect"):
                return

    async def put_data_out(
        self,
        function_call_id: str,
        attempt_token: str,
        start_index: int,
        data_format: int,
        serialized_messages: list[bytes],
    ) -> None:
        send = self._sends.get(function_call_id)
        for raw in serialized_messages:
            message = deserialize_data_format(raw, data_format, None)
            if send is None or message is None:
                continue
            with contextlib.suppress(OSError, RuntimeError):
                await send(message)
                self.sent.append(message)

    async def _queue_create(self, size: int) -> asyncio.Queue[Any]:
        return asyncio.Queue(size)


class _ModalProxy:
    """uvicorn's app: hands each connection to Modal's wrapper, as Modal's input would."""

    def __init__(self, web: Callable[[], Any], container: ModalWebContainer) -> None:
        self._web = web
        self._container = container
        self.io = _ContainerIO()
        self.fn: Callable[[dict[str, Any]], Any] | None = None
        self.lifespan: modal_asgi.LifespanManager | None = None
        self.scopes: list[dict[str, Any]] = []  # what the app was given, per input

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._input(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        # modal._runtime.user_code_imports: construct_webhook_callable + lifecycle_asgi
        fn, lifespan = modal_asgi.asgi_app_wrapper(self._web(), self.io)
        self.fn, self.lifespan = fn, lifespan
        background = asyncio.create_task(lifespan.background_task())
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await lifespan.lifespan_startup()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            if not self._container.crashing:
                await lifespan.lifespan_shutdown()
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        await send({"type": "lifespan.shutdown.complete"})

    async def _input(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.fn is not None, "an input before the container started"
        modal_scope = over_the_wire(scope)
        self.scopes.append(modal_scope)
        call_id = f"fc-{uuid.uuid4().hex[:20]}"
        self.io.open(call_id, receive, send)
        reset = execution_context._set_current_context_ids(
            [f"in-{uuid.uuid4().hex[:20]}"], [call_id], [""]
        )
        try:
            # modal._container_entrypoint.call_function, generator branch
            queue: asyncio.Queue[Any] = await self.io._queue_create(1024)
            sender = _ContainerIOManager.generator_output_sender(
                self.io,  # type: ignore[arg-type]
                call_id,
                "",
                ASGI,
                queue,
            )
            async with sender, aclosing(self.fn(modal_scope)) as messages:
                async for value in messages:
                    await queue.put(value)
        finally:
            reset()
            self.io.close(call_id)


class ModalWebContainer:
    """One Modal web container for ``web()`` (the ``@modal.asgi_app()`` body), on a port.

    ``restart()`` starts the next container on the same port (the same public URL), as
    Modal does after a crash, a preemption or a redeploy.
    """

    def __init__(self, web: Callable[[], Any], staging: CrashLosingVolume | None = None) -> None:
        self._web = web
        self.staging = staging
        self.port = free_port()
        self.crashing = False
        self.proxy: _ModalProxy | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> ModalWebContainer:
        self.crashing = False
        self.proxy = _ModalProxy(self._web, self)
        config = uvicorn.Config(
            self.proxy,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",
            ws_ping_interval=None,  # Modal's proxy is not uvicorn: no pings from the server
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="modal-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Modal web container did not start")
            time.sleep(0.02)
        return self

    def _join(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        assert not self._thread.is_alive(), "the container did not stop"

    def stop(self) -> None:
        """A graceful stop (redeploy, scale-in): lifespan shutdown, then Modal commits."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._join()
        if self.staging is not None:
            self.staging.commit()

    def crash(self) -> None:
        """The container is killed: no lifespan shutdown, uncommitted writes are lost."""
        if self.staging is not None:
            self.staging.dead = True
        self.crashing = True
        assert self._server is not None
        self._server.force_exit = True
        self._join()
        if self.staging is not None:
            self.staging.lose_uncommitted()

    def restart(self, *, crash: bool = False) -> ModalWebContainer:
        if crash:
            self.crash()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> ModalWebContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
