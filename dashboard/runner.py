"""Running the agent: the launcher interface and the local child-process launcher.

The web side owns run state. A launcher only answers "here is the result" or raises
:class:`AgentFailure` with one readable sentence; the workspace turns that into events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dashboard.storage import read_json, write_json_atomic

KILL_GRACE_S = 2.0


class AgentFailure(Exception):
    """The agent did not produce a result; ``str(self)`` is the readable reason."""


@dataclass(frozen=True)
class AgentJob:
    session_id: str
    volume_name: str
    experiment_context: Any
    log_url: str
    log_token: str
    agent: str
    timeout: float


class AgentLauncher(Protocol):
    async def run(self, job: AgentJob) -> dict[str, Any]:
        """Run the agent to its end; return its result dict or raise AgentFailure."""


@runtime_checkable
class DetachedLauncher(Protocol):
    """A launcher whose runs live outside the web process (Modal Functions).

    Such a run outlasts the web container: ``start`` returns a handle (the FunctionCall
    id) that the workspace stores with the session before it waits, and ``wait`` collects
    the outcome, also from a later container after a restart. Cancelling ``wait`` (the web
    container stops) must leave the run alone.
    """

    async def start(self, job: AgentJob) -> str:
        """Start the run; its handle, or AgentFailure if it could not start."""

    async def wait(self, job: AgentJob, handle: str) -> dict[str, Any]:
        """The run's result dict, or AgentFailure; ``job.timeout`` is the time left."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def format_timeout(seconds: float) -> str:
    return f"timed out after {seconds:g} s"


class LocalProcessLauncher:
    """Runs ``python -m dashboard.agent.worker`` in its own process group.

    A crash, ``os._exit`` or a hang in the agent cannot take the server down; on timeout
    or cancellation the whole group is killed.
    """

    def __init__(self, volumes_dir: Path, runs_dir: Path) -> None:
        self._volumes_dir = volumes_dir
        self._runs_dir = runs_dir
        self.reap_orphans()

    def reap_orphans(self) -> int:
        """Kill agent processes left behind by a server that died (SIGKILL, power loss).

        Each run records its process-group id; a pid file still present at start-up
        belongs to a run whose server never saw it end.
        """
        killed = 0
        for pid_file in self._runs_dir.glob("*/pid-*"):
            try:
                pgid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
                if b"dashboard.agent.worker" in cmdline:
                    os.killpg(pgid, signal.SIGKILL)
                    killed += 1
            except (OSError, ValueError):
                pass
            pid_file.unlink(missing_ok=True)
        return killed

    async def run(self, job: AgentJob) -> dict[str, Any]:
        run_dir = self._runs_dir / job.session_id
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:8]
        job_path = run_dir / f"job-{run_id}.json"
        result_path = run_dir / f"result-{run_id}.json"
        write_json_atomic(
            job_path,
            {
                "agent": job.agent,
                "volume_path": str((self._volumes_dir / job.volume_name).resolve()),
                "experiment_context": job.experiment_context,
                "log_url": job.log_url,
                "log_token": job.log_token,
                "result_path": str(result_path.resolve()),
            },
        )
        project_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dashboard.agent.worker",
            str(job_path),
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        pid_file = run_dir / f"pid-{run_id}"
        pid_file.write_text(str(proc.pid))
        try:
            code = await asyncio.wait_for(proc.wait(), job.timeout)
        except TimeoutError:
            await self._kill(proc)
            raise AgentFailure(f"The agent {format_timeout(job.timeout)}.") from None
        except asyncio.CancelledError:
            await self._kill(proc)
            raise
        finally:
            job_path.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
        outcome: dict[str, Any] | None = None
        if result_path.is_file():
            outcome = read_json(result_path)
            result_path.unlink(missing_ok=True)
        if outcome is not None and outcome.get("ok") and code == 0:
            result = outcome.get("result")
            return result if isinstance(result, dict) else {}
        if outcome is not None and not outcome.get("ok"):
            raise AgentFailure(f"The agent raised {outcome.get('error')}.")
        if code < 0:
            raise AgentFailure(f"The agent process was killed by {_signal_name(-code)}.")
        raise AgentFailure(f"The agent process exited with code {code} before giving a result.")

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
