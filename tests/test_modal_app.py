"""The Modal deployment without an account: settings, registration, and the real app flow.

Only the cloud seam is replaced: ``modal_app.volume_by_name`` (the volume factory) by
:class:`FakeModalVolumes`, and ``modal_app.run_agent_remotely`` (the Function handle the
launcher spawns) by :class:`FakeAgentFunction`, whose ``spawn`` runs the real
``run_agent_remotely`` body in a thread with the fake volume's folder as the mount. The
agent really runs, and really logs over HTTP to the app served by uvicorn on a loopback port.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import importlib
import json
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from modal._functions import _Function
from modal.exception import (
    DeprecationError,
    FunctionTimeoutError,
    NotFoundError,
    OutputExpiredError,
)
from modal.exception import TimeoutError as ModalTimeoutError
from websockets.sync.client import connect as ws_connect

import modal_app
from dashboard.runner import AgentFailure, AgentJob
from dashboard.workspace import HISTORY_FLUSH_S
from dashboard_modal import ModalAgentLauncher
from tests.feeds import tus_upload
from tests.test_volume_store_contract import FakeModalVolumes, FakeVolume

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "modal_app.py", ROOT / "dashboard_modal", ROOT / "dashboard", ROOT / "api"]


def _python_files(*paths: Path) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(path.rglob("*.py"))


# -- import and settings -------------------------------------------------------------------------
def test_import_raises_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.reload(modal_app)
    assert module.app.name == "dataset-dashboard"


@pytest.fixture(scope="module")
def function_definitions() -> dict[str, dict[str, Any]]:
    """What modal_app hands Modal for each Function (recorded while it is imported)."""
    recorded: dict[str, dict[str, Any]] = {}
    original = _Function._from_local

    def spy(info: Any, *args: Any, **kwargs: Any) -> Any:
        recorded[info.function_name] = kwargs
        return original(info, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(_Function, "_from_local", staticmethod(spy))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            importlib.reload(modal_app)
    finally:
        mp.undo()
    importlib.reload(modal_app)  # leave an unpatched module behind
    return recorded


def test_web_function_is_one_warm_concurrent_container(
    function_definitions: dict[str, dict[str, Any]],
) -> None:
    web = function_definitions["web"]
    assert web["min_containers"] == 1
    assert web["max_containers"] == 1
    assert web["max_concurrent_inputs"] >= 100
    assert web["timeout"] >= 600
    assert web["nonpreemptible"] is True, "a preemption would drop every feed and upload"
    assert web["scaledown_window"] is not None
    assert web["webhook_config"] is not None, "an ASGI web function"
    assert modal_app.STAGING_MOUNT in web["volumes"]
    # the same facts through Modal's public FunctionInfo
    info = modal_app.web.info()
    assert info.concurrency_info is not None
    assert (info.concurrency_info.max_inputs or 0) >= 100
    assert info.web_info is not None
    assert modal_app.STAGING_MOUNT in info.volumes


def _decorator_settings(function_name: str) -> dict[str, Any]:
    """The keyword arguments written in modal_app.py's decorators of ``function_name``."""
    tree = ast.parse((ROOT / "modal_app.py").read_text())
    settings: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg is not None:
                            try:
                                settings[keyword.arg] = ast.literal_eval(keyword.value)
                            except ValueError:
                                settings[keyword.arg] = ast.unparse(keyword.value)
    return settings


def test_web_function_settings_as_written() -> None:
    """The same settings read from the source, independent of Modal's internals."""
    web = _decorator_settings("web")
    assert web["min_containers"] == 1
    assert web["max_containers"] == 1
    assert web["max_inputs"] >= 100  # @modal.concurrent(max_inputs=...)


def test_agent_function_has_its_own_resources(
    function_definitions: dict[str, dict[str, Any]],
) -> None:
    agent = function_definitions["run_agent_remotely"]
    assert agent["cpu"] and agent["memory"] and agent["timeout"] >= 3600
    assert agent["webhook_config"] is None
    info = modal_app.run_agent_remotely.info()
    assert info.cpu == agent["cpu"] and info.memory_mib == agent["memory"]


def test_run_agent_remotely_is_registered() -> None:
    with warnings.catch_warnings():
        # App.registered_functions carries a Modal deprecation notice (removed in 1.7)
        warnings.simplefilter("ignore", DeprecationError)
        functions = modal_app.app.registered_functions
        web_endpoints = modal_app.app.registered_web_endpoints
    assert set(functions) >= {"run_agent_remotely", "web"}
    assert functions["run_agent_remotely"] is modal_app.run_agent_remotely
    assert web_endpoints == ["web"]


LEGACY = re.compile(
    r"keep_warm\s*=|allow_concurrent_inputs\s*=|concurrency_limit\s*=|web_endpoint\s*\("
    r"|modal\.Stub\b|\bStub\s*\(|modal\.Mount\b|\bMount\s*\.|container_idle_timeout\s*="
)


def test_no_legacy_modal_api() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _python_files(ROOT / "modal_app.py", ROOT / "dashboard_modal")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if LEGACY.search(line)
    ]
    assert offenders == []


HARDCODED_LOG_URL = re.compile(
    r"(localhost|127\.0\.0\.1|0\.0\.0\.0)(:\d+)?/log\b|https?://(localhost|127\.0\.0\.1)[^\s\"']*"
)


def test_no_hard_coded_localhost_log_url() -> None:
    offenders = []
    for path in _python_files(*SOURCES):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            match = HARDCODED_LOG_URL.search(line)
            if match is None:
                continue
            # a literal loopback URL is only tolerated as the CLI client's default target,
            # never anywhere a log URL is built
            is_log_context = "/log" in line or "log_url" in line or "public_url" in line
            if is_log_context or match.group(0).endswith("/log"):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_public_url_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_PUBLIC_URL", "https://dash.example.org/")
    assert modal_app.public_url() == "https://dash.example.org"
    monkeypatch.delenv("DASHBOARD_PUBLIC_URL")
    # outside a Modal container there is no web URL: the request's base URL is used
    assert modal_app.public_url() is None


def test_public_url_in_a_container_is_the_web_functions_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class DeployedWeb:
        calls = 0

        def get_web_url(self) -> str:
            DeployedWeb.calls += 1
            return "https://acme--dataset-dashboard-web.modal.run/"

    monkeypatch.delenv("DASHBOARD_PUBLIC_URL", raising=False)
    monkeypatch.setattr(modal_app.modal, "is_local", lambda: False)
    monkeypatch.setattr(modal_app, "web", DeployedWeb())
    monkeypatch.setattr(modal_app, "_web_url", {})
    assert modal_app.public_url() == "https://acme--dataset-dashboard-web.modal.run"
    assert modal_app.public_url() == "https://acme--dataset-dashboard-web.modal.run"
    assert DeployedWeb.calls == 1  # asked once per container

    class NoUrl:
        def get_web_url(self) -> None:
            raise RuntimeError("not hydrated")

    monkeypatch.setattr(modal_app, "web", NoUrl())
    monkeypatch.setattr(modal_app, "_web_url", {})
    assert modal_app.public_url() is None  # then the request's base URL is used


# -- the launcher's outcomes, with a fake Function handle -----------------------------------------
class FakeCall:
    """A ``modal.FunctionCall``: ``get.aio(timeout)``, ``cancel.aio()``."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future
        self.object_id = f"fc-{uuid.uuid4().hex[:24]}"
        self.cancelled = False
        self.get = _Aio(self._get)
        self.cancel = _Aio(self._cancel)

    async def _get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._future), timeout)
        except TimeoutError:
            raise ModalTimeoutError() from None

    async def _cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True


class _Aio:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.aio = fn


class FakeAgentFunction:
    """The ``run_agent_remotely`` handle: ``with_options(volumes=...).spawn.aio(**kwargs)``.

    ``body(volume, kwargs)`` produces the outcome in a worker thread.
    """

    def __init__(self, body: Callable[[FakeVolume, dict[str, Any]], Any]) -> None:
        self._body = body
        self._pool = concurrent.futures.ThreadPoolExecutor(4)
        self.options: list[dict[str, Any]] = []
        self.calls: list[FakeCall] = []
        self.spawned: list[dict[str, Any]] = []
        self.looked_up: list[str] = []

    def with_options(self, **options: Any) -> Any:
        self.options.append(options)
        (volume,) = options["volumes"].values()
        outer = self

        class Configured:
            spawn = _Aio(lambda **kwargs: outer._spawn(volume, kwargs))

        return Configured()

    async def _spawn(self, volume: FakeVolume, kwargs: dict[str, Any]) -> FakeCall:
        self.spawned.append(kwargs)
        call = FakeCall(self._pool.submit(self._body, volume, kwargs))
        self.calls.append(call)
        return call

    def from_id(self, call_id: str) -> FakeCall:
        """``modal.FunctionCall.from_id``: a handle on a call spawned earlier (lazy)."""
        self.looked_up.append(call_id)
        for call in self.calls:
            if call.object_id == call_id:
                return call
        raise NotFoundError(f"no function call {call_id!r}")


def real_body(function: Any) -> Callable[[FakeVolume, dict[str, Any]], Any]:
    """The real ``run_agent_remotely`` body, with the fake volume's folder as the mount."""

    def body(volume: FakeVolume, kwargs: dict[str, Any]) -> Any:
        assert kwargs["volume_path"] == modal_app.AGENT_MOUNT
        return function.local(**{**kwargs, "volume_path": str(volume.root)})

    return body


def make_job(tmp: Path, timeout: float = 30.0, agent: str = "x:y") -> AgentJob:
    return AgentJob(
        session_id="0" * 32,
        volume_name="dataset-volume-" + "0" * 32,
        experiment_context={"description": "d"},
        log_url="https://dash.example.org/log",
        log_token="t",
        agent=agent,
        timeout=timeout,
    )


def _launcher(tmp_path: Path, body: Callable[[FakeVolume, dict[str, Any]], Any]) -> Any:
    fake_volumes = FakeModalVolumes(tmp_path)
    function = FakeAgentFunction(body)
    launcher = ModalAgentLauncher(function, fake_volumes, function_call=function.from_id)
    return launcher, function, fake_volumes


@pytest.mark.anyio
async def test_launcher_spawns_with_the_session_volume_mounted(tmp_path: Path) -> None:
    launcher, function, volumes = _launcher(
        tmp_path, lambda v, kw: {"ok": True, "result": {"summary": {"n": 1}}}
    )
    job = make_job(tmp_path)
    assert await launcher.run(job) == {"summary": {"n": 1}}
    (options,) = function.options
    assert options["volumes"] == {modal_app.AGENT_MOUNT: volumes(job.volume_name)}
    assert options["timeout"] >= job.timeout
    (spawned,) = function.spawned
    assert spawned["volume_path"] == modal_app.AGENT_MOUNT
    assert spawned["log_url"] == job.log_url and spawned["log_token"] == job.log_token
    assert spawned["agent"] == job.agent and spawned["volume_name"] == job.volume_name


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            {"ok": False, "error": "ValueError: no header row"},
            "The agent raised ValueError: no header row.",
        ),
        (KeyError("volume"), "The agent raised KeyError: 'volume'."),
        (OutputExpiredError(), "The agent's result expired on Modal before the dashboard"),
        (FunctionTimeoutError("x"), "The agent timed out after 30 s."),
        ("not a dict", "The agent returned str, not a result."),
    ],
)
async def test_launcher_failures_are_one_readable_sentence(
    tmp_path: Path, outcome: Any, expected: str
) -> None:
    def body(volume: FakeVolume, kwargs: dict[str, Any]) -> Any:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    launcher, _, _ = _launcher(tmp_path, body)
    with pytest.raises(AgentFailure) as caught:
        await launcher.run(make_job(tmp_path))
    assert str(caught.value).startswith(expected)
    assert "Traceback" not in str(caught.value)


@pytest.mark.anyio
async def test_launcher_timeout_cancels_the_remote_call(tmp_path: Path) -> None:
    release = threading.Event()
    launcher, function, _ = _launcher(tmp_path, lambda v, kw: release.wait(10))
    try:
        with pytest.raises(AgentFailure, match=r"^The agent timed out after 0\.3 s\.$"):
            await launcher.run(make_job(tmp_path, timeout=0.3))
        assert function.calls[0].cancelled
    finally:
        release.set()


@pytest.mark.anyio
async def test_launcher_cancellation_leaves_the_remote_call_running(tmp_path: Path) -> None:
    """Cancelling the wait is what a stopping web container does: the run goes on, and a
    later ``wait`` on its id (another container, ``FunctionCall.from_id``) collects it."""
    release = threading.Event()
    launcher, function, volumes = _launcher(
        tmp_path, lambda v, kw: release.wait(10) and {"ok": True, "result": {"summary": {}}}
    )
    try:
        job = make_job(tmp_path)
        call_id = await launcher.start(job)
        task = asyncio.ensure_future(launcher.wait(job, call_id))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not function.calls[0].cancelled
        later = ModalAgentLauncher(function, volumes, function_call=function.from_id)
        release.set()
        assert await later.wait(job, call_id) == {"summary": {}}
        assert function.looked_up == [call_id]
    finally:
        release.set()


@pytest.mark.anyio
async def test_launcher_reattaching_to_an_unknown_call_is_readable(tmp_path: Path) -> None:
    launcher, _, _ = _launcher(tmp_path, lambda v, kw: {"ok": True})
    with pytest.raises(AgentFailure, match="could not be found on Modal: NotFoundError"):
        await launcher.wait(make_job(tmp_path), "fc-gone")


@pytest.mark.anyio
async def test_launcher_spawn_failure_is_readable(tmp_path: Path) -> None:
    class Broken:
        def with_options(self, **options: Any) -> Any:
            raise ConnectionError("modal is unreachable")

    launcher = ModalAgentLauncher(Broken(), FakeModalVolumes(tmp_path))
    with pytest.raises(AgentFailure, match="could not be started on Modal: ConnectionError"):
        await launcher.run(make_job(tmp_path))


def test_agent_body_runs_the_agent_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_agent_remotely's body: same agent code, log closed, volume committed."""
    volumes = FakeModalVolumes(tmp_path / "modal")
    monkeypatch.setattr(modal_app, "volume_by_name", volumes)
    volume = volumes("dataset-volume-" + "1" * 32)
    (volume.root / "data").mkdir()
    (volume.root / "data" / "a.txt").write_text("hello")
    outcome = modal_app.run_agent_remotely.local(
        volume_name=volume.name,
        volume_path=str(volume.root),
        experiment_context={"description": "d", "lines": 0},
        log_url="http://192.0.2.1:9/log",  # never reached: this agent logs nothing
        log_token="t",
        agent="tests.agents:chatty",
    )
    assert outcome == {"ok": True, "result": {"artifacts": [], "summary": {"files": ["a.txt"]}}}
    assert volume.commits == 1
    assert (volume.root / "results").is_dir()
    failed = modal_app.run_agent_remotely.local(
        volume_name=volume.name,
        volume_path=str(volume.root),
        experiment_context="x",
        log_url="http://192.0.2.1:9/log",
        log_token="t",
        agent="no_such_module_xyz:agent",
    )
    assert failed["ok"] is False and failed["error"].startswith("ModuleNotFoundError")
    assert volume.commits == 2


# -- the ASGI app the web function builds, served for real ---------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def modal_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The app ``web`` builds, with only the volume factory and the Function handle faked."""
    for name in ("DASHBOARD_PUBLIC_URL", "DASHBOARD_AGENT", "DASHBOARD_RUN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path / "staging-volume"))
    volumes = FakeModalVolumes(tmp_path / "modal")
    function = FakeAgentFunction(real_body(modal_app.run_agent_remotely))
    monkeypatch.setattr(modal_app, "volume_by_name", volumes)
    monkeypatch.setattr(modal_app, "run_agent_remotely", function)
    monkeypatch.setattr(modal_app, "function_call_by_id", function.from_id)
    with warnings.catch_warnings():
        # Function.local() notes that the staging volume is not mounted in this process
        warnings.filterwarnings("ignore", message=".*will not have access to the mounted Volume")
        app = modal_app.web.local()
    yield {"app": app, "volumes": volumes, "function": function}


def test_modal_built_app_serves_healthz(modal_web: dict[str, Any]) -> None:
    # a real server rather than starlette's TestClient, which warns (deprecated) with httpx
    with ThreadedServer(modal_web["app"]) as server:
        response = httpx.get(f"{server.url}/healthz", timeout=10)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        page = httpx.get(f"{server.url}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_modal_built_app_full_upload_and_run(modal_web: dict[str, Any]) -> None:
    volumes: FakeModalVolumes = modal_web["volumes"]
    function: FakeAgentFunction = modal_web["function"]
    csv = b"subject,hr,spo2\n1,61,97\n2,58,95\n3,,99\n"
    with (
        ThreadedServer(modal_web["app"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        created = http.post(
            "/api/sessions",
            json={"experiment_context": {"description": "Resting heart rate (hr) study"}},
        )
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        volume = volumes(f"dataset-volume-{sid}")
        stored = json.loads((volume.root / "context.json").read_text())
        assert "Resting heart rate" in json.dumps(stored)

        # twenty PATCHes, as a resumable client sends them
        staging = volumes(modal_app.STAGING_VOLUME)
        commits_before, upload_started = staging.commits, time.monotonic()
        tus_upload(
            f"http://127.0.0.1:{server.port}",
            sid,
            "night/vitals.csv",
            csv,
            chunk=(len(csv) + 19) // 20,
        )
        upload_commits = staging.commits - commits_before
        upload_s = time.monotonic() - upload_started
        assert (volume.root / "data" / "night" / "vitals.csv").read_bytes() == csv

        with ws_connect(f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/ws?since=0") as ws:
            started = http.post(f"/api/sessions/{sid}/run")
            assert started.status_code == 202, started.text
            events: list[dict[str, Any]] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                events.extend(json.loads(ws.recv(timeout=deadline - time.monotonic())))
                states = [e["data"]["state"] for e in events if e.get("type") == "status"]
                if states and states[-1] in ("succeeded", "failed"):
                    break
        errors = [e["data"].get("error") for e in events if e.get("type") == "status"]
        assert states[-1] == "succeeded", errors
        logs = [e["data"]["message"] for e in events if e.get("type") == "log"]
        assert logs, "the agent logged over HTTP to the app's /log"
        (result,) = [e["data"] for e in events if e.get("type") == "result"]
        assert "results/summary.json" in result["artifacts"]

        view = http.get(f"/api/sessions/{sid}").json()
        assert view["state"] == "succeeded"
        assert "results/summary.json" in view["artifacts"]
        summary = json.loads((volume.root / "results" / "summary.json").read_text())
        (profiled,) = summary["files"]
        assert profiled["path"] == "night/vitals.csv" and profiled["rows"] == 3

    (spawned,) = function.spawned
    assert spawned["log_url"] == f"{server.url}/log"  # the request's base URL, not a constant
    assert volume.commits == 1  # the agent's results, committed once
    # never per chunk: the file complete, plus the event history's flushes (at most one a
    # second, workspace.HISTORY_FLUSH_S)
    assert 1 <= upload_commits <= 2 + upload_s / HISTORY_FLUSH_S, (upload_commits, upload_s)
