"""Reading a request's form: what ``Request.form()`` and ``Request.uploads()`` return.

urlencoded bodies are small by nature and read into memory (bounded by the app's
``.maxMemoryContentSize``). multipart/form-data bodies are streamed through the sans-IO
:class:`~hemi.web.forms.MultipartParser`: text fields are kept in memory (bounded), file parts
go straight to temp files in the app's ``.saveContentFilesDir`` as they arrive, and the whole
body is bounded by the app's ``.maxUploadContentSize`` (413). An upload is therefore never held
in memory, however large. Temp files are deleted at the end of the exchange unless the handler
moved them (:meth:`Upload.move_to`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from typing import IO, TYPE_CHECKING

from .errors import HTTPError
from .forms import FormError, MultipartParser, PartData, PartEnd, PartStart, parse_content_type, parse_qsl

if TYPE_CHECKING:
    from .exchange import Request

__all__ = ["Upload", "read_form"]

log = logging.getLogger("hemi.web.formdata")

Fields = list[tuple[str, str]]

# Used when a request has no app (never in the server, but Request works without one).
_DEFAULT_MAX_UPLOAD = 128 << 20
_DEFAULT_MAX_TEXT = 16 << 20


class Upload:
    """A file part of a multipart form, already saved to a temp file at ``path``.

    ``filename`` is what the client sent (untrusted: use :attr:`basename` to build a path);
    ``content_type`` is the part's Content-Type, or None.
    """

    __slots__ = ("name", "filename", "content_type", "size", "path", "moved", "_cleaned")

    def __init__(self, name: str, filename: str, content_type: str | None, path: str) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.size = 0
        self.path = path
        self.moved = False
        self._cleaned = False

    def __repr__(self) -> str:
        return f"<Upload {self.name!r} {self.filename!r} {self.size} bytes>"

    @property
    def basename(self) -> str:
        """The file name without any directory part (old browsers send "C:\\dir\\a.txt"),
        safe to join to a directory; "upload" if nothing usable is left."""
        base = self.filename.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
        return base if base not in ("", ".", "..") else "upload"

    def read(self) -> bytes:
        """The whole file in memory: only for files known to be small."""
        with open(self.path, "rb") as f:
            return f.read()

    def open(self) -> IO[bytes]:
        """The file for reading, in binary mode (close it, or use ``with``)."""
        return open(self.path, "rb")

    def move_to(self, dest: str) -> str:
        """Keep the file: move it to ``dest`` (a file path, or a directory to move it into under
        :attr:`basename`). Returns the new path; cleanup will no longer delete it."""
        if os.path.isdir(dest):
            dest = os.path.join(dest, self.basename)
        try:
            os.replace(self.path, dest)
        except OSError:  # another file system: copy, then remove the temp file
            shutil.move(self.path, dest)
        self.path = dest
        self.moved = True
        return dest

    def cleanup(self) -> None:
        """Delete the temp file unless it was moved (called when the exchange ends)."""
        if self.moved or self._cleaned:
            return
        self._cleaned = True  # once: a second call must not delete a new file that took the name
        try:
            os.unlink(self.path)
        except OSError:
            pass


async def read_form(req: "Request") -> tuple[Fields, list[Upload]]:
    """The fields and uploads of the request's body; other content types give an empty form.

    Malformed forms raise ``HTTPError(400)``, forms over a limit ``HTTPError(413)``.
    """
    media, params = parse_content_type(req.header("content-type") or "")
    if media == "application/x-www-form-urlencoded":
        body = await req.read()
        try:
            return parse_qsl(body), []
        except FormError as e:
            raise HTTPError(e.status, str(e)) from None
    if media == "multipart/form-data":
        return await _read_multipart(req, params.get("boundary", ""))
    return [], []


async def _read_multipart(req: "Request", boundary: str) -> tuple[Fields, list[Upload]]:
    app = req.app
    limit = app.max_upload_content_size if app is not None else _DEFAULT_MAX_UPLOAD
    if req.content_length is not None and req.content_length > limit:
        raise HTTPError(413, "upload too large", close=True)
    collector = _Collector(req, app.max_memory_content_size if app is not None else _DEFAULT_MAX_TEXT)
    try:
        parser = MultipartParser(boundary)
        received = 0
        async for chunk in req.stream_body():
            received += len(chunk)
            if received > limit:
                raise HTTPError(413, "upload too large", close=True)
            collector.take(parser.feed(chunk))
        collector.take(parser.feed(b""))
    except FormError as e:
        collector.discard()
        # The rest of the body is of no use and may be large: do not read it to keep the connection.
        raise HTTPError(e.status, str(e), close=True) from None
    except BaseException:  # incl. cancellation when the client goes away
        collector.discard()
        raise
    return collector.fields, collector.uploads


class _Collector:
    """Turns parser events into fields (in memory) and uploads (spooled to temp files)."""

    __slots__ = ("req", "fields", "uploads", "text_limit", "text_size", "_name", "_text", "_file", "_upload")

    def __init__(self, req: "Request", text_limit: int) -> None:
        self.req = req
        self.fields: Fields = []
        self.uploads: list[Upload] = []
        self.text_limit = text_limit
        self.text_size = 0
        self._name = ""
        self._text: bytearray | None = None
        self._file: IO[bytes] | None = None
        self._upload: Upload | None = None

    def take(self, events: list) -> None:  # type: ignore[type-arg]
        try:
            self._take(events)
        except OSError as e:  # the disk, not the client: a server error, logged
            log.error("cannot save an upload: %s", e)
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            raise HTTPError(507 if full else 500, "cannot save the upload", close=True) from None

    def _take(self, events: list) -> None:  # type: ignore[type-arg]
        for ev in events:
            kind = type(ev)
            if kind is PartData:
                if self._file is not None:
                    self._file.write(ev.data)
                    self._upload.size += len(ev.data)  # type: ignore[union-attr]
                else:
                    self.text_size += len(ev.data)
                    if self.text_size > self.text_limit:
                        raise FormError(f"form fields larger than {self.text_limit} bytes in all", 413)
                    self._text.extend(ev.data)  # type: ignore[union-attr]
            elif kind is PartStart:
                self._start(ev)
            elif kind is PartEnd:
                self._end()

    def _start(self, ev: PartStart) -> None:
        self._name = ev.name
        if ev.filename:  # a file input left empty sends filename="": that is a plain (empty) field
            fd, path = tempfile.mkstemp(prefix="upload-", dir=self.req._temp_dir())
            self._file = os.fdopen(fd, "wb")
            self._upload = Upload(ev.name, ev.filename, ev.content_type, path)
            self.uploads.append(self._upload)
        else:
            self._text = bytearray()

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._upload = None
        elif self._text is not None:
            self.fields.append((self._name, self._text.decode("utf-8", "replace")))
            self._text = None

    def discard(self) -> None:
        """The form failed: close and delete everything spooled so far."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for up in self.uploads:
            up.cleanup()
        self.uploads = []
