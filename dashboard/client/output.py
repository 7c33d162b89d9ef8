"""What the client prints: rich progress bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
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


class UploadProgress:
    """Progress of every file and of the whole upload; plain lines when not on a terminal."""

    def __init__(self, out: Output, total_bytes: int, files: int) -> None:
        self.out = out
        self.total = total_bytes
        self.files = files
        self.index = 0
        self.current: str | None = None
        self.length = 0
        self.position = 0
        self.marks_done: set[int] = set()
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._task: TaskID | None = None
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
            self._overall = self._progress.add_task(
                f"all {files} file(s)", total=max(total_bytes, 1)
            )

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.out.line(text)

    def _tag(self) -> str:
        return f"[{self.index}/{self.files}]"

    def skip(self, relative: str, length: int) -> None:
        self.index += 1
        self._say(f"{self._tag()} {relative}: already uploaded ({length} bytes)")
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, length)

    def start(self, relative: str, length: int, offset: int) -> None:
        self.index += 1
        self.current, self.length, self.position = relative, length, offset
        percent = _percent(offset, length)
        self.marks_done = {m for m in PLAIN_MARKS if m <= percent}
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, offset)
            self._task = self._progress.add_task(
                f"{self._tag()} {relative}", total=max(length, 1), completed=offset
            )
        elif offset:
            self._say(
                f"{self._tag()} {relative}: resuming at {offset} of {length} bytes ({percent}%)"
            )
        else:
            self._say(f"{self._tag()} {relative}: 0% of {length} bytes")

    def advance(self, nbytes: int) -> None:
        self.set_position(self.position + nbytes)

    def set_position(self, offset: int) -> None:
        delta = offset - self.position
        self.position = offset
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, completed=offset)
            if self._overall is not None:
                self._progress.advance(self._overall, delta)
            return
        percent = _percent(offset, self.length)
        for mark in PLAIN_MARKS:
            if mark <= percent and mark not in self.marks_done and offset < self.length:
                self.marks_done.add(mark)
                self._say(f"{self._tag()} {self.current}: {mark}% of {self.length} bytes")

    def done(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._say(f"{self._tag()} {self.current}: 100% of {self.length} bytes, done")


def _percent(offset: int, length: int) -> int:
    return 100 if length <= 0 else int(offset * 100 // length)


# -- input --------------------------------------------------------------------------------
