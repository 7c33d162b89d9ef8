"""The domain facade the web layer talks to: sessions, uploads, runs and the hub together.

One ``Workspace`` per app, created in the app's lifespan (never a module global).
Routes make one call here each; every refusal is a typed ``DashboardError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dashboard.config import Settings
from dashboard.context import validate_context
from dashboard.errors import Conflict, InvalidInput, Unauthorized
from dashboard.event_archive import EventArchive
from dashboard.hub import EventHub
from dashboard.runner import (
    AgentFailure,
    AgentJob,
    AgentLauncher,
    DetachedLauncher,
    LocalProcessLauncher,
)
from dashboard.sessions import TERMINAL, RunRecord, SessionRecord, SessionStore, check_session_id
from dashboard.storage import read_json, write_json_atomic
from dashboard.uploads import FileWriter, UploadManager, UploadRecord
from dashboard.volumes import LocalVolumeStore, VolumeStore

logger = logging.getLogger("dashboard")

SWEEP_INTERVAL_S = 60.0  # expired uploads
ARCHIVE_INTERVAL_S = 5.0  # how often ended sessions' histories are looked at
ARCHIVE_AFTER_S = 30.0  # an ended, unfollowed session's history moves to disk after this
LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})
LEVEL_ALIASES = {"warn": "warning", "critical": "error", "fatal": "error", "trace": "debug"}
MAX_LOG_MESSAGE_CHARS = 16_384
RESTART_ERROR = "The run was interrupted by a server restart."
HISTORY_FLUSH_S = 1.0  # new events reach the archive (and, on Modal, a commit) this often
RECENT_SESSIONS = 50  # GET /api/sessions lists at most this many


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Workspace:
    def __init__(
        self,
        settings: Settings,
        *,
        volumes: VolumeStore | None = None,
        launcher: AgentLauncher | None = None,
        writer: FileWriter | None = None,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._seq_file = settings.data_dir / "seq.json"
        seq_start = int(read_json(self._seq_file)) if self._seq_file.is_file() else 0
        self.hub = EventHub(
            settings.history,
            seq_start=seq_start,
            reserve=lambda upto: write_json_atomic(self._seq_file, upto),
            archive=EventArchive(settings.data_dir / "events"),
        )
        self.sessions = SessionStore(settings.sessions_dir)
        self.volumes: VolumeStore = volumes or LocalVolumeStore(settings.volumes_dir)
        self.launcher: AgentLauncher = launcher or LocalProcessLauncher(
            settings.volumes_dir, settings.data_dir / "runs"
        )
        self.uploads = UploadManager(
            settings.staging_dir,
            self.volumes,
            expiry_s=settings.upload_expiry,
            max_size=settings.max_upload_size,
            on_progress=self._publish_upload,
            writer=writer,
            sync=settings.upload_sync,
        )
        self._tokens: dict[str, str] = {}
        self._run_tasks: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._persister: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def detached_runs(self) -> bool:
        """Whether runs live outside this process (Modal) and outlast it."""
        return isinstance(self.launcher, DetachedLauncher)

    # -- lifecycle -----------------------------------------------------------------
    async def startup(self) -> None:
        # a legacy form cut off by a crash left its staged parts behind; no request is in
        # flight yet, and the expiry sweep only knows tus uploads
        for leftover in self.settings.staging_dir.glob("legacy-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for record in self.sessions.all():
            self._tokens[_token_key(record.log_token)] = record.session_id
            if record.state not in ("queued", "running"):
                continue
            run = record.run
            if self.detached_runs and run is not None and run.call_id:
                self._reattach(record, run.call_id)
            else:  # a local child process died with the server (or never started)
                record.state = "failed"
                record.run = RunRecord("failed", RESTART_ERROR, finished=time.time())
                self.sessions.save(record)
        self.uploads.on_publish_failed = self._publish_failed
        self.uploads.resume_publishing()  # uploads whose bytes were in, not yet marked done
        await self.volumes.checkpoint()  # the seq block reserved by the hub, the records
        self._sweeper = asyncio.create_task(self._sweep_forever())
        self._persister = asyncio.create_task(self._persist_forever())

    async def shutdown(self) -> None:
        """Stop the background work. A detached (Modal) run is not stopped: its record
        keeps the FunctionCall id and the next container re-attaches to it. A local
        child-process run is killed with the server, as it cannot outlive it."""
        self._stopping = True
        for background in (self._sweeper, self._persister):
            if background is not None:
                background.cancel()
        tasks = list(self._run_tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.uploads.stop_publishing()  # the next start resumes them
        # every ended session's log survives a restart (?session= links replay it)
        with contextlib.suppress(OSError):
            self.hub.archive_finished(0.0, followed_too=True)
        await asyncio.to_thread(self.uploads.close)
        with contextlib.suppress(OSError):
            self.hub.flush_history()
        await self.volumes.checkpoint()

    async def _persist_forever(self) -> None:
        """Append new events to each session's archive and checkpoint, about every second,
        so a page that re-attaches after a restart (even a crash) replays the log."""
        while True:
            await asyncio.sleep(HISTORY_FLUSH_S)
            try:
                written = self.hub.flush_history()
            except OSError:
                logger.exception("writing event histories failed")
                continue
            if written:
                await self.volumes.checkpoint()

    async def _sweep_forever(self) -> None:
        last_upload_sweep = time.monotonic()
        while True:
            await asyncio.sleep(ARCHIVE_INTERVAL_S)
            try:
                self.hub.archive_finished(ARCHIVE_AFTER_S)
                if time.monotonic() - last_upload_sweep >= SWEEP_INTERVAL_S:
                    last_upload_sweep = time.monotonic()
                    self.uploads.sweep_expired()
            except OSError:
                logger.exception("background sweep failed")

    async def wait_idle(self) -> None:
        """Wait for every run in progress (tests, benchmarks)."""
        while self._run_tasks:
            await asyncio.gather(*self._run_tasks.values(), return_exceptions=True)

    # -- sessions ------------------------------------------------------------------
    async def create_session(
        self, raw_context: Any, client_id: str | None, *, parse_json_text: bool = False
    ) -> SessionRecord:
        context = validate_context(raw_context, parse_json_text=parse_json_text)
        record = self.sessions.create(context, client_id)
        self._tokens[_token_key(record.log_token)] = record.session_id
        await self.volumes.create(record.session_id, context.to_json())
        self.hub.register_session(record.session_id, client_id)
        self._publish_status(record)
        return record

    def session(self, session_id: str) -> SessionRecord:
        """The session or NotFound; also makes sure its feed exists (after a restart)."""
        record = self.sessions.get(check_session_id(session_id))
        if not self.hub.knows(record.session_id):
            self.hub.register_session(record.session_id, record.client_id)
            if not self.hub.adopt_archive(record.session_id):
                self._publish_status(record)
        return record

    async def session_view(self, session_id: str) -> dict[str, Any]:
        record = self.session(session_id)
        return {
            "session_id": record.session_id,
            "volume_name": record.volume_name,
            "state": record.state,
            "files": (
                record.files
                if record.files is not None
                else [u.listing() for u in self.uploads.records(session_id)]
            ),
            "run": record.run.public() if record.run else None,
            "artifacts": await self.volumes.artifacts(session_id),
            "summary": record.summary,
        }

    def recent_sessions(self, client_id: str | None) -> list[SessionRecord]:
        """The sessions started from one browser (its client cookie), newest first."""
        return self.sessions.of_client(client_id, RECENT_SESSIONS)

    def _set_state(self, record: SessionRecord, state: str, error: str | None = None) -> None:
        record.state = state
        self.sessions.save(record)
        self._publish_status(record, error)

    def _publish_status(self, record: SessionRecord, error: str | None = None) -> None:
        data: dict[str, Any] = {"state": record.state}
        error = error or (record.run.error if record.run and record.state == "failed" else None)
        if error:
            data["error"] = error
        self.hub.publish(record.session_id, "status", data)

    # -- uploads -------------------------------------------------------------------
    def _check_accepting(self, record: SessionRecord) -> None:
        if record.state not in ("created", "uploading"):
            raise Conflict("This session's run has started; it takes no more files.")

    def create_upload(
        self,
        session_id: str,
        length: int | None,
        metadata_header: str,
        metadata: dict[str, str],
        *,
        partial: bool = False,
    ) -> UploadRecord:
        """A new tus upload; ``partial`` for a part of a concatenation (names no file)."""
        record = self.session(session_id)
        self._check_accepting(record)
        if partial:
            upload = self.uploads.create_partial(session_id, length, metadata_header, metadata)
        else:
            self._check_folder_clash(session_id, self.uploads.relative_path(metadata))
            upload = self.uploads.create(session_id, length, metadata_header, metadata)
        if record.state == "created":
            self._set_state(record, "uploading")
        if not partial and upload.length is not None:
            self._publish_upload(upload)
        return upload

    async def create_final_upload(
        self, session_id: str, upload_ids: list[str], metadata_header: str, metadata: dict[str, str]
    ) -> UploadRecord:
        """tus concatenation: the final upload, assembled from complete partial uploads."""
        record = self.session(session_id)
        self._check_accepting(record)
        self._check_folder_clash(session_id, self.uploads.relative_path(metadata))
        return await self.uploads.create_final(session_id, upload_ids, metadata_header, metadata)

    def _check_folder_clash(self, session_id: str, mine: str) -> None:
        """Refused at creation, not at the last chunk: a path that a file of the session
        needs as a folder, or that needs one of its files as a folder."""
        for other in self.uploads.records(session_id):
            theirs = other.relative_path
            if mine.startswith(theirs + "/") or theirs.startswith(mine + "/"):
                raise Conflict(
                    f"{mine!r} and {theirs!r} cannot both be in this session: "
                    "one would have to be a file and a folder at once."
                )

    async def complete_if_empty(self, upload: UploadRecord) -> UploadRecord:
        """A zero-length upload is complete at creation (tus-js-client sends no PATCH)."""
        if upload.length == 0 and not upload.done:
            await self.uploads.complete_empty(upload)
            if not upload.partial:
                self._publish_upload(upload)
        return upload

    async def append(
        self,
        session_id: str,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        checksum: tuple[str, bytes] | None,
        upload_length: int | None = None,
    ) -> UploadRecord:
        self.session(session_id)
        upload = self.uploads.get(session_id, upload_id)
        return await self.uploads.append(
            upload,
            offset,
            body,
            content_length=content_length,
            checksum=checksum,
            upload_length=upload_length,
        )

    async def upload_for_head(self, session_id: str, upload_id: str) -> UploadRecord:
        """An upload for HEAD. One whose every byte arrived but which a killed server never
        published is finished first: a client that sees offset == length sends no PATCH."""
        upload = self.uploads.get(session_id, upload_id)
        if await self.uploads.finish_if_stranded(upload) and not upload.partial:
            self._publish_upload(upload)
        return upload

    def _publish_upload(self, upload: UploadRecord) -> None:
        self.hub.publish(upload.session_id, "upload", upload.public())

    def _publish_failed(self, upload: UploadRecord, reason: str) -> None:
        message = (
            f"Storing {upload.relative_path!r} in the session's volume failed ({reason}); "
            "send the file again."
        )
        self.hub.publish(upload.session_id, "log", {"level": "error", "message": message})

    async def add_legacy_files(
        self, record: SessionRecord, staged: list[tuple[str, Path, int]]
    ) -> None:
        """Files that arrived whole through the legacy form: uploads whose bytes are in,
        published in the background like a tus upload's last PATCH."""
        if staged and record.state == "created":
            self._set_state(record, "uploading")
        for relative, path, size in staged:
            upload = self.uploads.add_staged(record.session_id, relative, path, size)
            self._publish_upload(upload)

    # -- runs ----------------------------------------------------------------------
    def start_run(
        self, session_id: str, public_url: str, *, after_publishing: bool = False
    ) -> SessionRecord:
        """Queue the run. A file still being stored in the volume is a 409, unless
        ``after_publishing`` (the legacy form): then the run waits for it."""
        record = self.session(session_id)
        if record.run is not None or session_id in self._run_tasks:
            raise Conflict("This session already has a run.")
        unfinished = self.uploads.unfinished(session_id)
        if unfinished:
            names = ", ".join(u.relative_path for u in unfinished[:3])
            raise Conflict(f"{len(unfinished)} upload(s) are not finished yet: {names}.")
        publishing = self.uploads.publishing(session_id)
        if publishing and not after_publishing:
            names = ", ".join(u.relative_path for u in publishing[:3])
            raise Conflict(
                f"{len(publishing)} file(s) are complete but still being stored in the "
                f"session's volume: {names}. Start the run once their upload events (or "
                f"GET /api/sessions/{session_id}) say done."
            )
        partials = self.uploads.partials(session_id)
        if partials:
            raise Conflict(
                f"{len(partials)} part(s) of a parallel upload wait for their final upload "
                "(Upload-Concat: final); finish or terminate them first."
            )
        if not any(u.done or u in publishing for u in self.uploads.records(session_id)):
            raise Conflict("Upload at least one file before starting the run.")
        record.run = RunRecord("queued")
        self._set_state(record, "queued")
        job = AgentJob(
            session_id=session_id,
            volume_name=record.volume_name,
            experiment_context=record.experiment_context.value,
            log_url=f"{public_url.rstrip('/')}/log",
            log_token=record.log_token,
            agent=self.settings.agent,
            timeout=self.settings.run_timeout,
        )
        self._track(session_id, self._run(record, job))
        return record

    def _track(self, session_id: str, run: Any) -> None:
        task = asyncio.create_task(run)
        self._run_tasks[session_id] = task
        task.add_done_callback(lambda _t: self._run_tasks.pop(session_id, None))

    def _reattach(self, record: SessionRecord, call_id: str) -> None:
        """After a restart: collect the outcome of a run that went on without us."""
        assert record.run is not None
        started = record.run.started or time.time()
        left = self.settings.run_timeout - (time.time() - started)
        job = AgentJob(
            session_id=record.session_id,
            volume_name=record.volume_name,
            experiment_context=record.experiment_context.value,
            log_url="",  # the agent has had its log URL since it started
            log_token=record.log_token,
            agent=self.settings.agent,
            timeout=max(left, 1.0),
        )
        self.session(record.session_id)  # its feed, with the history from the archive
        self._track(record.session_id, self._run(record, job, call_id=call_id))

    async def _run(self, record: SessionRecord, job: AgentJob, call_id: str | None = None) -> None:
        assert record.run is not None
        try:
            if call_id is None:
                await self.uploads.wait_published(record.session_id)
                failed = self.uploads.unfinished(record.session_id)
                if failed:
                    names = ", ".join(u.relative_path for u in failed[:3])
                    raise AgentFailure(
                        f"The run did not start: {len(failed)} file(s) could not be stored "
                        f"in the session's volume ({names})."
                    )
                await self._fold_uploads(record)

                record.run.state = "running"
                record.run.started = time.time()
                self._set_state(record, "running")
            if isinstance(self.launcher, DetachedLauncher):
                if call_id is None:
                    call_id = await self.launcher.start(job)
                    record.run.call_id = call_id
                    self.sessions.save(record)
                    await self.volumes.checkpoint()  # a crash from here on re-attaches
                result = await self.launcher.wait(job, call_id)
            else:
                result = await self.launcher.run(job)
        except AgentFailure as exc:
            self._finish(record, "failed", str(exc))
            return
        except asyncio.CancelledError:
            if not (self._stopping and record.run.call_id):
                self._finish(record, "failed", "The run was stopped because the server shut down.")
            raise  # a detached run goes on; the next container re-attaches to it
        except Exception as exc:  # a launcher bug or a cloud error: still a readable failure
            logger.exception("agent launcher failed")
            self._finish(
                record, "failed", f"The run could not complete: {type(exc).__name__}: {exc}"
            )
            return
        # the volume is the truth: list what is there, whatever the agent claims
        artifacts = await self.volumes.artifacts(record.session_id)
        summary = result.get("summary") if isinstance(result.get("summary"), dict) else {}
        record.summary = summary
        self.hub.publish(record.session_id, "result", {"artifacts": artifacts, "summary": summary})
        self._finish(record, "succeeded", None)

    async def _fold_uploads(self, record: SessionRecord) -> None:
        """The run starts, the session takes no more files: keep the file list in the
        session record and remove the session's upload records from the staging area
        (Modal volumes cap their inodes; nothing there is needed any more)."""
        record.files = [u.listing() for u in self.uploads.records(record.session_id)]
        self.sessions.save(record)
        self.uploads.forget_session(record.session_id)
        await self.volumes.checkpoint()

    def _finish(self, record: SessionRecord, state: str, error: str | None) -> None:
        assert record.run is not None
        record.run.state = state
        record.run.error = error
        record.run.finished = time.time()
        self._set_state(record, state, error)

    # -- agent logs ----------------------------------------------------------------
    def session_for_token(self, token: str | None) -> SessionRecord:
        if not token:
            raise Unauthorized("POST /log needs 'Authorization: Bearer <session log token>'.")
        session_id = self._tokens.get(_token_key(token))
        if session_id is None:
            raise Unauthorized("The log token is not valid.")
        record = self.sessions.get(session_id)
        if not hmac.compare_digest(record.log_token.encode(), token.encode()):
            raise Unauthorized("The log token is not valid.")
        return record

    def accept_logs(self, token: str | None, records: list[dict[str, Any]]) -> int:
        """Publish log records for the session the token belongs to; returns how many."""
        session = self.session_for_token(token)
        clean: list[tuple[str, str]] = []
        for index, item in enumerate(records):
            message = item.get("message")
            if not isinstance(message, str):
                raise InvalidInput.field(f"records[{index}].message", "must be a string.")
            level = str(item.get("level") or "info").lower()
            level = LEVEL_ALIASES.get(level, level)
            if level not in LOG_LEVELS:
                level = "info"
            clean.append((level, message[:MAX_LOG_MESSAGE_CHARS]))
        if session.state in TERMINAL:
            raise Conflict("This session's run has ended; it takes no more log lines.")
        self.hub.publish_many(
            session.session_id,
            [("log", {"level": level, "message": message}) for level, message in clean],
        )
        return len(clean)
