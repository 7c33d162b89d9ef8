"""What the client prints: rich progress bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dashboard.client.http import PLAIN_MARKS


class Output:
    """Lines for people: rich on a terminal, plain text (no escape codes) otherwise."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.console = Console(file=self.stdout, highlight=False)
        self.is_terminal = self.console.is_terminal

    def line(self, text: str, style: str | None = None) -> None:
        if self.is_terminal:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def error(self, text: str) -> None:
        self.stdout.flush()
        self.stderr.write(f"error: {text}\n")
        self.stderr.flush()


SHOWN_FILE_BYTES = 1024 * 1024  # on a terminal, files this big get a bar of their own


class UploadProgress:
    """Progress of the whole upload and of each file in flight (several at once, from
    several threads). On a terminal: an overall bar (files and bytes) plus a bar per large
    file in flight; small files only move the overall bar. Elsewhere: plain lines, a file's
    25/50/75 % marks and its completion, never one line per chunk."""

    def __init__(self, out: Output, total_bytes: int, files: int) -> None:
        self.out = out
        self.total = total_bytes
        self.files = files
        self.started = 0
        self.finished = 0
        self.lock = threading.RLock()
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        if out.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=out.console,
            )
            self._progress.start()
            self._overall = self._progress.add_task(self._overall_text(), total=max(total_bytes, 1))

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _overall_text(self) -> str:
        return f"all files ({self.finished}/{self.files} done)"

    def say(self, text: str) -> None:
        with self.lock:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                self.out.line(text)

    def _advance_overall(self, nbytes: int, *, finished: bool = False) -> None:
        if finished:
            self.finished += 1
        if self._progress is not None and self._overall is not None:
            self._progress.update(
                self._overall, advance=nbytes, description=self._overall_text()
            )

    def skip(self, relative: str, length: int) -> None:
        with self.lock:
            self.started += 1
            self._advance_overall(length, finished=True)
            self.say(f"[{self.started}/{self.files}] {relative}: already uploaded ({length} bytes)")

    def start(self, relative: str, length: int, offset: int) -> FileProgress:
        with self.lock:
            self.started += 1
            return FileProgress(self, f"[{self.started}/{self.files}]", relative, length, offset)


class FileProgress:
    """One file's progress; positions only move the bars by their difference."""

    def __init__(
        self, board: UploadProgress, tag: str, relative: str, length: int, offset: int
    ) -> None:
        self.board = board
        self.tag = tag
        self.relative = relative
        self.length = length
        self.position = offset
        percent = _percent(offset, length)
        self.marks_done = {m for m in PLAIN_MARKS if m <= percent}
        self._task: TaskID | None = None
        progress = board._progress
        with board.lock:
            board._advance_overall(offset)
            if progress is not None and length >= SHOWN_FILE_BYTES:
                self._task = progress.add_task(
                    f"{tag} {relative}", total=max(length, 1), completed=offset
                )
        if offset and progress is None:
            board.say(f"{tag} {relative}: resuming at {offset} of {length} bytes ({percent}%)")
        elif offset:
            board.say(f"{tag} {relative}: resuming at {offset} of {length} bytes")

    def advance(self, nbytes: int) -> None:
        self.set_position(self.position + nbytes)

    def set_position(self, offset: int) -> None:
        board = self.board
        with board.lock:
            delta = offset - self.position
            self.position = offset
            progress = board._progress
            if progress is not None:
                if self._task is not None:
                    progress.update(self._task, completed=offset)
                board._advance_overall(delta)
                return
            percent = _percent(offset, self.length)
            marks = [
                m
                for m in PLAIN_MARKS
                if m <= percent and m not in self.marks_done and offset < self.length
            ]
            self.marks_done.update(marks)
        for mark in marks:
            board.say(f"{self.tag} {self.relative}: {mark}% of {self.length} bytes")

    def done(self) -> None:
        board = self.board
        with board.lock:
            board._advance_overall(self.length - self.position, finished=True)
            self.position = self.length
            if board._progress is not None and self._task is not None:
                board._progress.remove_task(self._task)
                self._task = None
        if board._progress is None or self.length >= SHOWN_FILE_BYTES or board.files <= 20:
            board.say(f"{self.tag} {self.relative}: 100% of {self.length} bytes, done")


def _percent(offset: int, length: int) -> int:
    return 100 if length <= 0 else int(offset * 100 // length)


# -- input --------------------------------------------------------------------------------
