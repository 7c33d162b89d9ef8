"""Streaming multipart/form-data reader for the legacy ``POST /upload``.

File parts go straight to staging files as they arrive (never whole in memory);
their names (which may carry a relative path) are checked by the path rules before a
byte is written. Text fields are kept, each bounded in size. The form is acknowledged
once, after its last byte: ``settle`` flushes every file (``fdatasync``) before the files
are published, and the kernel is asked to start writing each file out while it arrives
(``WritebackHint``) so that flush has little left to do.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from python_multipart.multipart import MultipartParser, parse_options_header

from dashboard.errors import Conflict, MalformedRequest, TooLarge
from dashboard.paths import clean_relative_path
from dashboard.uploads import FileWriter, WritebackHint, sync_file

MAX_FIELD_BYTES = 1024 * 1024  # a text field (the experiment context) beyond this is refused
MAX_PARTS = 100_000
MAX_PART_HEADER_BYTES = 16 * 1024  # room for a 4096-byte path even when escaped (filename*)
_FILENAME = re.compile(r'filename="((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_FILENAME_STAR = re.compile(r"filename\*=([^;]+)", re.IGNORECASE)


def raw_filename(disposition: str) -> str | None:
    """The filename exactly as sent (browsers may send 'dir/sub/file.csv')."""
    star = _FILENAME_STAR.search(disposition)
    if star:
        value = star.group(1).strip()
        charset, sep, rest = value.partition("''")
        if not sep:  # no charset'' prefix: the value is the (escaped) name itself
            return unquote(value)
        return unquote(rest, encoding=charset or "utf-8")  # may be "": no file chosen
    match = _FILENAME.search(disposition)
    if match:
        return re.sub(r'\\(["\\])', r"\1", match.group(1))
    return None


@dataclass
class StagedFile:
    relative: str
    path: Path
    size: int = 0


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[StagedFile] = field(default_factory=list)


class LegacyFormReader:
    def __init__(self, content_type: str, staging: Path, writer: FileWriter) -> None:
        ctype, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise MalformedRequest("POST /upload takes multipart/form-data with a boundary.")
        self.staging = staging
        self._writer = writer
        self.form = ParsedForm()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._field_name: str | None = None
        self._field_buf = bytearray()
        self._fd: int | None = None  # the file part being written
        self._hint: WritebackHint | None = None
        self._current: StagedFile | None = None
        self._names: set[str] = set()
        self._parts = 0
        self._parser = MultipartParser(
            boundary,
            max_header_size=MAX_PART_HEADER_BYTES,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise TooLarge(f"The form has more than {MAX_PARTS} parts.")
        self._headers = {}
        self._field_name = None
        self._field_buf = bytearray()
        self._current = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        raw_disposition = self._headers.get(b"content-disposition", b"")
        disposition = raw_disposition.decode("utf-8", "replace")
        # the raw bytes: a str would be encoded as Latin-1 and fail on other names
        _, params = parse_options_header(raw_disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = raw_filename(disposition)
        if filename is None:
            self._field_name = name
            return
        if filename == "" and name:
            self._field_name = None  # an empty file input: browsers send it, it means nothing
            return
        relative = clean_relative_path(filename, field=f"{name or 'files'}.filename")
        if relative in self._names:
            raise Conflict(f"The form names the file {relative!r} twice.")
        self._names.add(relative)
        staged = StagedFile(relative, self.staging / f"{len(self.form.files):06d}.part")
        self.staging.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(staged.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._hint = WritebackHint(self._writer, self._fd, 0)
        self._current = staged
        self.form.files.append(staged)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._fd is not None and self._current is not None and self._hint is not None:
            view = memoryview(data)[start:end]
            while view:
                written = self._writer.write(self._fd, view)
                view = view[written:]
                self._current.size += written
                self._hint.wrote(written)
        elif self._field_name is not None:
            if len(self._field_buf) + end - start > MAX_FIELD_BYTES:
                raise TooLarge(
                    f"The form field {self._field_name!r} is over {MAX_FIELD_BYTES} bytes."
                )
            self._field_buf += data[start:end]

    def _part_end(self) -> None:
        if self._fd is not None:
            self._close_file()  # flushed by settle(), once the whole form is in
        elif self._field_name is not None:
            try:
                text = self._field_buf.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedRequest(
                    f"The form field {self._field_name!r} is not UTF-8."
                ) from exc
            self.form.fields.setdefault(self._field_name, text)

    def feed(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def finish(self) -> ParsedForm:
        self._parser.finalize()
        if self._fd is not None:
            raise MalformedRequest("The multipart body ended in the middle of a file.")
        return self.form

    def _close_file(self) -> None:
        fd, self._fd, self._hint = self._fd, None, None
        if fd is not None:
            os.close(fd)

    async def settle(self) -> None:
        """Flush every file of the form to disk (one ``fdatasync`` each); raise its error."""
        paths = [f.path for f in self.form.files]

        def sync_all() -> None:
            for path in paths:
                sync_file(self._writer, path)

        await asyncio.to_thread(sync_all)

    async def aclose(self) -> None:
        """Close the file being written, if any (on any exit of the request)."""
        self._close_file()
