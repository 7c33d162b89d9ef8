"""Running the agent on Modal: the same ``AgentLauncher`` interface as the local launcher.

Web side (:class:`ModalAgentLauncher`, a ``DetachedLauncher``): spawn the
``run_agent_remotely`` Modal Function with the session's volume mounted at
:data:`AGENT_MOUNT` (``with_options(volumes=...)``), hand back the call's id to be stored
with the session, await the call (re-attached with ``FunctionCall.from_id`` after a
restart) for the time the job has left, and turn the outcome into a result or one readable
:class:`~dashboard.runner.AgentFailure` sentence. Every Modal call uses ``.aio``.

Agent side (:func:`run_agent_job`): the body of ``run_agent_remotely``. It runs the very
same code as a local run (``dashboard.agent.worker.run_job``: ``AgentLog(url, token)``,
``load_agent(spec)``, the agent, ``log.close()``), then commits the volume so the results
are visible to the web container, and returns the outcome envelope
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "Type: message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from modal.exception import OutputExpiredError
from modal.exception import TimeoutError as ModalTimeoutError

from dashboard.agent.worker import describe_exception, run_job
from dashboard.runner import AgentFailure, AgentJob, format_timeout

logger = logging.getLogger("dashboard.modal")

AGENT_MOUNT = "/volume"
"""Where the session's volume is mounted in the agent's container."""
REMOTE_TIMEOUT_GRACE_S = 60
"""The remote function's own timeout is the job's plus this: the web side decides first."""
CANCEL_TIMEOUT_S = 10.0


# -- the slice of modal.Function / modal.FunctionCall this launcher uses -------------------
class _Get(Protocol):
    def aio(self, timeout: float | None = None) -> Awaitable[Any]: ...


class _Cancel(Protocol):
    def aio(self) -> Awaitable[Any]: ...


class FunctionCallLike(Protocol):
    @property
    def object_id(self) -> str: ...

    @property
    def get(self) -> _Get: ...

    @property
    def cancel(self) -> _Cancel: ...


class _Spawn(Protocol):
    def aio(self, **kwargs: Any) -> Awaitable[FunctionCallLike]: ...


class ConfiguredFunction(Protocol):
    @property
    def spawn(self) -> _Spawn: ...


class AgentFunctionLike(Protocol):
    """What the launcher needs of the ``run_agent_remotely`` ``modal.Function``."""

    def with_options(self, *, volumes: dict[str, Any], timeout: int) -> ConfiguredFunction: ...


VolumeHandleFactory = Callable[[str], Any]


def default_volume_handle(name: str) -> Any:
    """``modal.Volume.from_name(name)``: the session volume, created by the volume store."""
    import modal

    return modal.Volume.from_name(name)


FunctionCallFactory = Callable[[str], FunctionCallLike]


def default_function_call(call_id: str) -> FunctionCallLike:
    """``modal.FunctionCall.from_id(call_id)``: a lazy handle, hydrated on first use."""
    import modal

    return modal.FunctionCall.from_id(call_id)


class ModalAgentLauncher:
    """Spawns the agent Function on the session's volume and awaits its outcome.

    A run is a ``modal.FunctionCall`` that outlives the web container: ``start`` returns
    its ``object_id``, which the workspace stores with the session, and ``wait`` collects
    its outcome, also from the next container (``FunctionCall.from_id``). Cancelling
    ``wait`` (the container stops: a redeploy, a scale-in, a preemption) leaves the remote
    run alone; only the web side's own timeout cancels it.
    """

    def __init__(
        self,
        function: AgentFunctionLike,
        volume_factory: VolumeHandleFactory | None = None,
        *,
        mount_path: str = AGENT_MOUNT,
        function_call: FunctionCallFactory | None = None,
    ) -> None:
        self._function = function
        self._volume_factory = volume_factory or default_volume_handle
        self._mount = mount_path
        self._function_call = function_call or default_function_call
        self._calls: dict[str, FunctionCallLike] = {}

    async def start(self, job: AgentJob) -> str:
        try:
            configured = self._function.with_options(
                volumes={self._mount: self._volume_factory(job.volume_name)},
                timeout=math.ceil(job.timeout) + REMOTE_TIMEOUT_GRACE_S,
            )
            call = await configured.spawn.aio(
                volume_name=job.volume_name,
                volume_path=self._mount,
                experiment_context=job.experiment_context,
                log_url=job.log_url,
                log_token=job.log_token,
                agent=job.agent,
            )
        except Exception as exc:
            raise AgentFailure(
                f"The agent could not be started on Modal: {describe_exception(exc)}."
            ) from exc
        call_id = str(call.object_id)
        self._calls[call_id] = call
        return call_id

    async def wait(self, job: AgentJob, handle: str) -> dict[str, Any]:
        call = self._calls.pop(handle, None)
        if call is None:  # a run started by an earlier container
            try:
                call = self._function_call(handle)
            except Exception as exc:
                raise AgentFailure(
                    f"The agent's run could not be found on Modal: {describe_exception(exc)}."
                ) from exc
        timeout = max(job.timeout, 0.0)
        try:
            async with asyncio.timeout(timeout + REMOTE_TIMEOUT_GRACE_S):
                outcome = await call.get.aio(timeout=timeout)
        except OutputExpiredError:
            raise AgentFailure(
                "The agent's result expired on Modal before the dashboard collected it."
            ) from None
        except (ModalTimeoutError, TimeoutError):  # includes FunctionTimeoutError
            await _cancel(call)
            raise AgentFailure(f"The agent {format_timeout(job.timeout)}.") from None
        except asyncio.CancelledError:
            raise  # the web container stops; the run goes on and is re-attached later
        except Exception as exc:  # the remote call raised: its type and message, no traceback
            raise AgentFailure(f"The agent raised {describe_exception(exc)}.") from None
        return _result(outcome)

    async def run(self, job: AgentJob) -> dict[str, Any]:
        return await self.wait(job, await self.start(job))


async def _cancel(call: FunctionCallLike) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(asyncio.wait_for(call.cancel.aio(), CANCEL_TIMEOUT_S))


def _result(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, dict) and "ok" in outcome:
        if outcome["ok"]:
            result = outcome.get("result")
            return result if isinstance(result, dict) else {}
        raise AgentFailure(f"The agent raised {outcome.get('error') or 'an error'}.")
    if isinstance(outcome, dict):  # a plain result dict
        return outcome
    raise AgentFailure(f"The agent returned {type(outcome).__name__}, not a result.")


def run_agent_job(
    *,
    volume_path: str,
    experiment_context: Any,
    log_url: str,
    log_token: str,
    agent: str,
    commit: Callable[[], Any],
) -> dict[str, Any]:
    """The agent Function's body: run the agent on the mounted volume, commit, report."""
    root = Path(volume_path)
    for folder in ("data", "results"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    try:
        outcome = run_job(
            {
                "agent": agent,
                "volume_path": str(root),
                "experiment_context": experiment_context,
                "log_url": log_url,
                "log_token": log_token,
            }
        )
        try:
            json.dumps(outcome)
        except (TypeError, ValueError) as exc:
            outcome = {"ok": False, "error": f"the agent's result is not JSON: {exc}"}
    finally:
        commit()  # results written: make them visible outside this container
    return outcome
