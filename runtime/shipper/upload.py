"""shipper's chunked upload (drf-chunked-upload 0.6.0 plus shipper's completion handler).

``PUT /api/v1/maintainers/chunked_upload/`` starts an upload with its first chunk, ``PUT
…/<uuid>/`` appends one (``Content-Range: bytes s-e/total``, end inclusive, ``s`` must equal the
stored offset), ``GET`` lists or shows the caller's uploads (never cached: a stale offset is
upstream bug drf-chunked-upload#30), ``POST …/<uuid>/`` with ``sha256`` completes it. Errors are
the library's ``{"detail": …}`` or shipper's ``{"error", "message"}``, as the reference lists.

A chunk streams from the request straight into ``<data>/shipper-uploads/<uuid>.part`` at its
offset (no spooling of the multipart body), under an flock on the part file, and is hashed on
the way (:class:`runtime.uploads.HashedWriter`): the process keeps each upload's running SHA-256
(:class:`RunningHashes`), so completion never reads the file again. hashlib states cannot be
stored, so a process without the state (after a restart, or another runtime process) hashes the
part file's acknowledged bytes once and goes on from there.

**What an acknowledged chunk survives.** The offset in SQLite moves after the chunk's bytes are
in the part file, so a killed process (or a concurrent PUT) never leaves an offset that claims
bytes the file lacks: written bytes live in the kernel's page cache, which outlives the process.
There is no fsync per chunk: it is what made chunks slow (each one waited for the disk), and a
kill does not need it. A power loss can lose bytes the kernel had not written yet; the disk
writing is started every 32 MiB (``sync_file_range``), a resumed upload whose part file is
shorter than its offset is moved back to what the file holds (the client resends from there,
as it resumes from the offset the server reports), and the SHA-256 the client sends at
completion is compared with one taken from the part file's bytes, never with what the client
said, so a damaged upload is refused, never published. Completion fsyncs the file before it is
linked into repo/ (the durable point); thanks to the writeback, that wait stays short.

On completion the build is checked (checksum, name, device, permission, variant, version,
duplicate, a readable zip: its central directory, not its bytes), linked into
``repo/builds/<codename>/`` without ever replacing a file there, given its ``.sha256`` sidecar,
and the catalog is rebuilt. Any failure removes the upload and its file; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from builder.atomic import TEMP_PREFIX, fsync_dir
from builder.errors import FormatError
from builder.formats import Source
from builder.hashing import sha256_file
from builder.model import Blob, OtaBuild, StoreSettings
from builder.shipper.ota import (
    NO_BASE_URL,
    SAFE_NAME,
    X86_CODENAMES,
    BuildNameError,
    PatternError,
    build_id_of,
    check_zip,
    parse_build_name,
    read_build,
    version_allowed,
)
from builder.sidecars import read_sidecar
from runtime.accounts import Accounts, User
from runtime.database import Database, Table
from runtime.errors import ApiError, InsufficientStorageError
from runtime.multipart import FormError, StreamedForm, multipart_boundary, stream_form
from runtime.services import services
from runtime.shipper.builds import find_by_stem, write_checksum
from runtime.shipper.common import NO_STORE, authenticate, body_fields, may_maintain, rebuild
from runtime.storage import Storage
from runtime.uploads import HashedWriter, check_room

MAX_BYTES = 5_000_000_000
EXPIRATION = 86400.0  # an incomplete upload expires a day after it started
CHECKSUM_TYPE = "sha256"
INCOMPLETE, COMPLETE = 1, 2
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
BLOCK = 1 << 20
UPLOADS_DIR = "shipper-uploads"
MAX_FILENAME = 255
MAX_OPEN_UPLOADS = 4  # unfinished chunked uploads per account (shippy keeps one at a time)
MAX_OPEN_BYTES = 2 * MAX_BYTES  # the declared totals of an account's unfinished uploads
LOCK_WAIT = 30.0  # seconds a chunk waits for another request writing to the same upload


def _detail(status: int, detail: Any, **extra: Any) -> ApiError:
    return ApiError(status, {"detail": detail, **extra})


def _shipper(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": code, "message": message})


NOT_FOUND = "No ChunkedUpload matches the given query."
log = logging.getLogger("runtime.shipper.upload")


class ChunkedUploads:
    """The upload sessions of the database and their part files in the data folder, and
    publishing a finished one into repo/builds/: what the endpoints below do, without HTTP."""

    def __init__(self, db: Database | Storage, data: Path, repo: Path, settings: StoreSettings) -> None:
        self._db, self.repo, self.settings = db, repo, settings
        self.folder = data / UPLOADS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def db(self) -> Database:
        """The calling thread's connection: one request's steps run on the event loop and in
        worker threads, and a connection must never run statements of two threads at once
        (SQLite then fails with "another row available" or loses an offset update)."""
        return self._db.db if isinstance(self._db, Storage) else self._db

    @property
    def table(self) -> Table:
        return self.db.table("shipper_uploads")

    def part(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.part"


def uploads(request: Request) -> ChunkedUploads:
    svc = services(request)
    return ChunkedUploads(svc.storage, svc.config.data, svc.config.repo, svc.settings())


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def serialize(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    url = str(request.url_for("shipper_chunked_upload_one", pk=row["id"]))
    return {
        "id": row["id"],
        "url": url,
        "file": f"{UPLOADS_DIR}/{row['id']}.part",
        "filename": row["filename"],
        "offset": row["offset"],
        "created_at": _iso(row["created_at"]),
        "status": row["status"],
        "completed_at": _iso(row["completed_at"]),
        "user": row["user_id"],
    }


def _get_row(ups: ChunkedUploads, user: User, pk: str) -> dict[str, Any]:
    try:
        pk = str(uuid.UUID(pk))
    except ValueError as exc:
        raise _detail(404, NOT_FOUND) from exc
    rows = list(ups.table.rows_where("id = ? and user_id = ?", [pk, user.id], limit=1))
    if not rows:
        raise _detail(404, NOT_FOUND)  # unknown, or somebody else's: uploads are per user
    return rows[0]


def _delete(ups: ChunkedUploads, row: dict[str, Any]) -> None:
    HASHES.drop(row["id"])
    with contextlib.suppress(FileNotFoundError):
        ups.part(row["id"]).unlink()
    ups.table.delete_where("id = ?", [row["id"]])


def cleanup_expired(ups: ChunkedUploads, now: float | None = None) -> int:
    """Remove incomplete uploads older than a day, and part files no record names (a process
    killed between creating the file and the record)."""
    now = time.time() if now is None else now
    old = list(ups.table.rows_where("created_at < ?", [now - EXPIRATION]))
    for row in old:
        _delete(ups, row)
    known = {r[0] for r in ups.db.execute("SELECT id FROM shipper_uploads").fetchall()}
    for entry in ups.folder.iterdir():
        stem = entry.name.removesuffix(".part")
        try:
            stale = entry.stat().st_mtime < now - EXPIRATION
        except FileNotFoundError:  # another request completed or dropped that upload meanwhile
            continue
        if stale and (stem not in known or entry.name.startswith(TEMP_PREFIX)):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    return len(old)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[int]:
    """An exclusive flock on the part file: one writer per upload across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


class RunningHashes:
    """The running SHA-256 of each upload this process received, with the offset it covers:
    what lets completion answer without reading the part file. Per process and bounded (least
    recently used first out); a missing or stale state is rebuilt from the part file."""

    def __init__(self, capacity: int = 256) -> None:
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def get(self, upload_id: str, offset: int) -> Any | None:
        """A copy of the state at ``offset``, or None."""
        with self._lock:
            state = self._states.get(upload_id)
            if state is None or state[0] != offset:
                return None
            self._states.move_to_end(upload_id)
            return state[1].copy()

    def put(self, upload_id: str, offset: int, digest: Any) -> None:
        with self._lock:
            self._states[upload_id] = (offset, digest)
            self._states.move_to_end(upload_id)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._states.pop(upload_id, None)


HASHES = RunningHashes()


class PartShorterError(Exception):
    """The part file holds fewer bytes than the upload's offset (a power loss took them)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the part file holds {size} bytes")
        self.size = size


def running_digest(upload_id: str, fd: int, offset: int) -> Any | None:
    """The running SHA-256 at ``offset`` when this process has it, else None: the chunk is then
    written without hashing and completion hashes the part file once (:func:`digest_at`). So
    chunks that alternate between processes or nodes (round robin) cost one read of the file at
    the end, not a re-read of all of it per chunk. Raises PartShorterError when the file lacks
    some of those bytes (a power loss)."""
    digest = HASHES.get(upload_id, offset)
    if digest is not None:
        return digest
    size = os.fstat(fd).st_size
    if size < offset:
        raise PartShorterError(size)
    return None


def digest_at(upload_id: str, fd: int, offset: int) -> Any:
    """The SHA-256 state of the part file's first ``offset`` bytes: the running one when this
    process has it, else hashed from the file once (after a restart, or after another process
    took the last chunk). Raises PartShorterError when the file lacks some of those bytes."""
    digest = HASHES.get(upload_id, offset)
    if digest is not None:
        return digest
    digest = hashlib.sha256()
    done = 0
    while done < offset:
        block = os.pread(fd, min(BLOCK, offset - done), done)
        if not block:
            raise PartShorterError(done)
        digest.update(block)
        done += len(block)
    HASHES.put(upload_id, offset, digest.copy())
    return digest


async def _lock_part(path: Path, create: bool) -> int:
    """An open descriptor of the part file holding its flock, waiting on the event loop (never
    in a worker thread) while another request writes to the same upload; a 409 after
    :data:`LOCK_WAIT` seconds."""
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise _detail(409, "Another request is writing to this upload; try again.") from None
            await asyncio.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise


def _new_upload(user: User, filename: str, total: int, upload_id: str | None = None) -> dict[str, Any]:
    """The row of an upload that has just begun (drf-chunked-upload's fields)."""
    return {
        "id": upload_id or str(uuid.uuid4()),
        "user_id": user.id,
        "filename": filename,
        "offset": 0,
        "total": total,
        "created_at": time.time(),
        "status": INCOMPLETE,
        "completed_at": None,
    }


def _check_quota(ups: ChunkedUploads, user: User, total: int) -> None:
    """Only maintainers start uploads, and each account has a bounded number of unfinished ones
    and bytes on the data folder's disk (a token holder cannot fill it with open uploads)."""
    if not user.staff and not user.devices:
        raise _detail(403, "You do not have permission to perform this action.")
    open_count, open_bytes = ups.db.execute(
        "SELECT count(*), coalesce(sum(total), 0) FROM shipper_uploads WHERE user_id = ? AND status = ?",
        [user.id, INCOMPLETE],
    ).fetchone()
    if open_count >= MAX_OPEN_UPLOADS:
        raise _detail(
            400,
            f"Too many unfinished uploads ({open_count}): finish them, or wait a day for them to expire.",
        )
    if open_bytes + total > MAX_OPEN_BYTES:
        raise _detail(400, f"Unfinished uploads may hold at most {MAX_OPEN_BYTES} bytes per account.")


def _validate_filename(filename: Any) -> str:
    errors: list[str] = []
    if filename is None or not isinstance(filename, str) or filename == "":
        errors.append("This field is required.")
    elif len(filename) > MAX_FILENAME:
        errors.append(f"Ensure this field has no more than {MAX_FILENAME} characters.")
    elif (
        "/" in filename
        or "\\" in filename
        or "\0" in filename
        or filename in (".", "..")
        or filename[0] == "."
    ):
        errors.append("The file name must be a plain name, without folders.")
    elif not SAFE_NAME.fullmatch(filename):
        errors.append("The file name may hold letters, digits and . _ + - only, and must end in .zip.")
    if errors:
        raise _detail(400, {"filename": errors})
    return filename


def _content_range(request: Request) -> tuple[int, int, int] | ApiError:
    """(start, end, total) of the chunk's Content-Range, or the error that refuses it."""
    match = CONTENT_RANGE.match(request.headers.get("content-range", ""))
    if not match:
        return _detail(400, "Error in request headers")
    try:
        start, end, total = (int(g) for g in match.groups())
    except ValueError:  # more digits than int() accepts
        return _detail(400, "Error in request headers")
    if end > total:
        return _detail(400, f"End of chunk exceeds reported total ({total} bytes)")
    if total > MAX_BYTES:
        return _detail(400, f"Size of file exceeds the limit ({MAX_BYTES} bytes)")
    return start, end, total


async def _read_form(request: Request, writer: HashedWriter | None) -> StreamedForm:
    """The chunk's form, its ``file`` part streamed into ``writer`` (only counted without one).
    A body that is no multipart form has no chunk file, as Starlette's empty form had none."""
    boundary = multipart_boundary(request.headers.get("content-type", ""))
    if boundary is None:
        return StreamedForm()

    async def sink() -> Any:
        if writer is None:
            return None
        if writer.size:  # a second part named "file": the last one wins, so start over
            raise _detail(400, "Too many files. Maximum number of files is 1.")
        return writer.write

    try:
        return await stream_form(request.stream(), boundary, "file", sink, max_files=1, max_fields=20)
    except FormError as exc:
        raise _detail(400, str(exc)) from exc


async def put_chunk(request: Request) -> Response:
    """One chunk, streamed into the part file at its offset while the body arrives. What the
    headers and the stored upload allow is decided before the body is read; the errors are
    still answered in drf-chunked-upload's order (no file, headers, size, then the upload's own),
    so a refused chunk's body is read and dropped, never written."""
    user = await authenticate(request)
    pk = request.path_params.get("pk")
    limit = MAX_BYTES + BLOCK  # a chunk can never be larger than the whole upload
    if int(request.headers.get("content-length") or 0) > limit:
        raise _detail(400, f"Size of file exceeds the limit ({MAX_BYTES} bytes)")
    ups = uploads(request)
    header = _content_range(request)
    refusal: Exception | None = None  # the upload's own error, answered after the body's
    row: dict[str, Any] | None = None
    fd = -1
    writer: HashedWriter | None = None
    upload_id = str(uuid.uuid4()) if pk is None else ""
    try:
        if not isinstance(header, ApiError):
            start, _end, total = header
            if pk is None:
                if start == 0 and check_room_ok(ups.folder, total):
                    fd = await _lock_part(ups.part(upload_id), create=True)
                    writer = HashedWriter(fd, 0, (hashlib.sha256(),))
            else:
                try:
                    row = _get_row(ups, user, pk)
                    fd = await _lock_part(ups.part(row["id"]), create=False)
                    row = await run_in_threadpool(_open_row, ups, row["id"], fd, start, total)
                    digest = await run_in_threadpool(_digest_or_rewind, ups, row, fd)
                    os.ftruncate(fd, start)  # anything past the offset was never acknowledged
                    writer = HashedWriter(fd, start, () if digest is None else (digest,))
                except (ApiError, FileNotFoundError) as exc:
                    refusal = exc if isinstance(exc, ApiError) else _detail(404, NOT_FOUND)
        try:
            form = await _read_form(request, writer)
            if writer is not None:
                await writer.close()
        except BaseException:
            if writer is not None:
                await writer.abort()
            raise
        if not form.has_file:
            raise _detail(400, "No chunk file was submitted")
        if isinstance(header, ApiError):
            raise header
        start, end, total = header
        if form.file_size != end - start + 1:
            raise _detail(
                400,
                f"File size doesn't match headers: file size is {form.file_size} but "
                f"{end - start + 1} reported",
            )
        if pk is None:
            filename = _validate_filename(form.fields.get("filename"))
            if start != 0:
                raise _detail(400, "Offsets do not match", expected_offset=0, provided_offset=start)
            await run_in_threadpool(cleanup_expired, ups)
            _check_quota(ups, user, total)
            check_room(ups.folder, total)
            assert writer is not None
            row = _new_upload(user, filename, total, upload_id)
            row["offset"] = form.file_size
            ups.table.insert(row)
        else:
            if refusal is not None:
                raise refusal
            assert row is not None and writer is not None
            row["offset"] = start + form.file_size
            update = 'UPDATE shipper_uploads SET "offset" = ? WHERE id = ?'
            await run_in_threadpool(ups.db.execute, update, [row["offset"], row["id"]])
        if writer.digests:
            HASHES.put(row["id"], row["offset"], writer.digests[0])
        else:
            HASHES.drop(row["id"])  # a state at an older offset is of no use any more
        return JSONResponse(serialize(request, row), headers=NO_STORE)
    except BaseException:
        if pk is None and fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                ups.part(upload_id).unlink()
        elif writer is not None and row is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, row["offset"])  # drop the refused or cut-off chunk's bytes
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def check_room_ok(folder: Path, needed: int) -> bool:
    """Whether the upload fits (its refusal is answered after the body, in the usual order)."""
    try:
        check_room(folder, needed)
    except InsufficientStorageError:
        return False
    return True


def _open_row(ups: ChunkedUploads, upload_id: str, fd: int, start: int, total: int) -> dict[str, Any]:
    """The upload's row re-read under its lock (another process may have appended since we
    looked), checked: open, the same total, the chunk at the stored offset."""
    rows = list(ups.table.rows_where("id = ?", [upload_id], limit=1))
    if not rows:
        raise _detail(404, NOT_FOUND)
    row = rows[0]
    _check_open(row)
    if row["total"] != total:
        raise _detail(400, "Error in request headers")
    if row["offset"] != start:
        raise _detail(400, "Offsets do not match", expected_offset=row["offset"], provided_offset=start)
    return row


def _digest_or_rewind(ups: ChunkedUploads, row: dict[str, Any], fd: int) -> Any:
    """The running SHA-256 at the row's offset, or None (:func:`running_digest`); when the part
    file lost acknowledged bytes (a power loss), the offset moves back to what the file holds
    and the chunk is refused with the offset to resume from."""
    try:
        return running_digest(row["id"], fd, row["offset"])
    except PartShorterError as exc:
        ups.db.execute('UPDATE shipper_uploads SET "offset" = ? WHERE id = ?', [exc.size, row["id"]])
        raise _detail(
            400, "Offsets do not match", expected_offset=exc.size, provided_offset=row["offset"]
        ) from exc


def _check_open(row: dict[str, Any]) -> None:
    if row["status"] == COMPLETE:
        raise _detail(400, 'Upload has already been marked as "complete"')
    if row["created_at"] < time.time() - EXPIRATION:
        raise _detail(410, "Upload has expired")


async def list_uploads(request: Request) -> Response:
    user = await authenticate(request)
    ups = uploads(request)
    await run_in_threadpool(cleanup_expired, ups)
    rows = ups.table.rows_where("user_id = ?", [user.id], order_by="created_at")
    return JSONResponse([serialize(request, r) for r in rows], headers=NO_STORE)


async def get_upload(request: Request) -> Response:
    user = await authenticate(request)
    return JSONResponse(
        serialize(request, _get_row(uploads(request), user, request.path_params["pk"])), headers=NO_STORE
    )


async def complete(request: Request) -> Response:
    user = await authenticate(request)
    ups = uploads(request)
    row = _get_row(ups, user, request.path_params["pk"])
    fields = await _fields(request)
    try:
        result = await run_in_threadpool(_complete, ups, user, row, fields.get(CHECKSUM_TYPE))
    except Exception:
        await run_in_threadpool(_delete, ups, row)  # shipper: any failure drops the upload
        raise
    await rebuild(request, changed=[build_relpath(ups.settings, row["filename"])])
    return JSONResponse(result)


async def _fields(request: Request) -> dict[str, Any]:

    return await body_fields(request)


def _complete(ups: ChunkedUploads, user: User, row: dict[str, Any], checksum: Any) -> dict[str, Any]:
    part = ups.part(row["id"])
    with locked(part) as fd:
        # Re-read under the lock: another request may have completed or dropped it since we looked.
        rows = list(ups.table.rows_where("id = ?", [row["id"]], limit=1))
        if not rows:
            raise _detail(404, NOT_FOUND)
        row = rows[0]
        if row["status"] == COMPLETE:  # marked complete by a process that died before publishing
            return _finish(ups, user, row, str(checksum) if checksum not in (None, "") else None)
        _check_open(row)
        if checksum in (None, ""):
            raise _detail(400, f"Checksum of type '{CHECKSUM_TYPE}' is required")
        # The running hash of the acknowledged bytes: no read of the file, unless this process
        # has no state for it (then it hashes the file once). What lies past the offset was
        # never acknowledged (a chunk cut off) and is dropped.
        try:
            hexdigest = digest_at(row["id"], fd, row["offset"]).hexdigest()
        except PartShorterError:
            raise _detail(400, "checksum does not match") from None
        if hexdigest != str(checksum):
            raise _detail(400, "checksum does not match")
        os.ftruncate(fd, row["offset"])
        os.fsync(fd)  # the durable point: the build is linked into repo/ next
        done = {"status": COMPLETE, "completed_at": time.time()}
        ups.table.update(row["id"], done)
        return _finish(ups, user, row, hexdigest, verified=True)


def _finish(
    ups: ChunkedUploads, user: User, row: dict[str, Any], sha256: str | None, verified: bool = False
) -> dict[str, Any]:
    """Publish a complete upload and drop its record, under the upload's lock. Completion is one
    step from the client's view: a process killed after marking the upload complete leaves the
    row and its part file, and the next start (:func:`recover_completed`) or the client's retry
    finishes it here; one killed after linking the build into repo/ is answered as published.
    ``verified``: ``sha256`` is the part file's own, taken as its chunks arrived (otherwise the
    file is hashed here, once: a restart lost the running hash)."""
    part = ups.part(row["id"])
    name = row["filename"]
    HASHES.drop(row["id"])
    found = find_by_stem(ups.repo, name[:-4] if name.endswith(".zip") else name)
    part_empty = not part.exists() or part.stat().st_size == 0
    if found is not None and (part_empty or os.path.samefile(part, found[1])):
        _, published = found
        if sha256 is not None and sha256_file(published)[1] != sha256:
            raise _detail(400, "checksum does not match")
        _delete(ups, row)
        return published_answer(ups.repo, ups.settings, name)
    if part_empty:
        _delete(ups, row)
        raise _detail(404, NOT_FOUND)
    if verified and sha256 is not None:
        size, digest = part.stat().st_size, sha256
    else:
        size, digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        raise _detail(400, "checksum does not match")
    result = publish(ups.repo, ups.settings, user, name, part, digest, size)
    _delete(ups, row)  # the build is in repo/ now; the upload record has done its job
    return result


def build_relpath(settings: StoreSettings, filename: str) -> str:
    """Where a completed upload of ``filename`` is in repo/ (its name was checked before)."""
    return f"builds/{parse_build_name(filename, settings).codename}/{filename}"


def published_answer(repo: Path, settings: StoreSettings, filename: str) -> dict[str, Any]:
    """The completion answer for a build that is in repo/ already."""
    return _uploaded(settings, read_build(Source(repo, build_relpath(settings, filename), settings)))


def _uploaded(settings: StoreSettings, build: OtaBuild) -> dict[str, Any]:
    """shipper's completion answer, naming the device as ``str(Device)`` does."""
    device = next((d for d in settings.ota_devices if d.codename == build.codename), None)
    parts = (device.manufacturer, device.name) if device else ()
    label = " ".join(p for p in (*parts, f"({build.codename})") if p)
    return {"message": f"Build has been uploaded for device {label}!", "build_id": build.build_id}


def recover_completed(ups: ChunkedUploads, users: Accounts) -> int:
    """At start: finish every upload a killed process had marked complete but not published;
    one that cannot be published any more is dropped, as a failed completion is."""
    done = 0
    for row in list(ups.table.rows_where("status = ?", [COMPLETE])):
        user = users.by_id(row["user_id"])
        try:
            with locked(ups.part(row["id"])):
                if user is None:
                    raise _detail(404, NOT_FOUND)
                _finish(ups, user, row, None)
            done += 1
        except (ApiError, FormatError, OSError) as exc:
            log.warning("dropping the completed upload %s (%s): %s", row["id"], row["filename"], exc)
            _delete(ups, row)
    return done


def publish(
    repo: Path, settings: StoreSettings, user: User, filename: str, part: Path, sha256: str, size: int
) -> dict[str, Any]:
    """shipper's ``handle_chunked_build`` and ``run_validations``, in their order."""
    _validate_filename(filename)
    try:
        name = parse_build_name(filename, settings)
    except PatternError as exc:
        raise _shipper(400, "configuration_error", str(exc)) from exc
    except BuildNameError as exc:
        raise _shipper(400, "invalid_file_name", "The file name is malformed!") from exc
    device = next((d for d in settings.ota_devices if d.codename == name.codename), None)
    if device is None:
        raise _shipper(404, "unknown_device", "The specified device does not exist!")
    if not may_maintain(user, device.codename):
        raise _shipper(401, "insufficient_permissions", "You are not authorized to upload for this device!")
    if find_by_stem(repo, name.stem) is not None:
        raise _shipper(400, "duplicate_build", "The build already exists in the system!")
    if name.variant not in {v.codename for v in settings.ota_variants}:
        raise _shipper(
            400,
            "unsupported_variant",
            "The build's variant is not supported by this server instance. If you believe the variant is "
            "valid, please contact an admin to change the allowed variants list.",
        )
    if name.codename in X86_CODENAMES:
        if not name.x86_type:
            raise _shipper(
                400,
                "missing_x86_type",
                "The x86 type is missing from the build's file name, even though the build is an x86 build.",
            )
        if name.x86_type not in {t.codename for t in settings.ota_x86_types}:
            raise _shipper(
                400,
                "unsupported_x86_type",
                "The build's x86 type is not supported by this server instance. If you believe the x86 type "
                "is valid, please contact an admin to change the allowed x86 types list.",
            )
    if not version_allowed(name.version, settings):
        allowed = ", ".join(settings.ota_allowed_versions)
        raise _shipper(
            400,
            "version_not_allowed",
            # "build'sversion": shipper's wording, kept verbatim for clients that match on it.
            f"The server is currently not accepting this build'sversion, {name.version}. The server only "
            f"accepts the following versions: {allowed}. If you believe the version should be allowed, "
            "please contact an admin to adjust server settings.",
        )
    relpath = f"builds/{name.codename}/{filename}"
    try:
        build = _uploaded_build(settings, relpath, part, name.codename, sha256, size)
    except FormatError as exc:
        raise _shipper(400, "invalid_build", f"The build cannot be published: {exc}") from exc
    target = repo / relpath
    _link_into_place(part, target)
    write_checksum(target, sha256)
    return _uploaded(settings, build)


def _uploaded_build(
    settings: StoreSettings, relpath: str, part: Path, codename: str, sha256: str, size: int
) -> OtaBuild:
    """What :func:`builder.shipper.ota.read_build` makes of the upload, without its read of
    every byte: the name, device, variant, x86 type and version are :func:`publish`'s checks
    above, the part file has no sidecars yet, and ``sha256`` is the part file's (hashed as it
    arrived). What is left reads little: a zip that recovery can open (its central directory)."""
    if not settings.ota_feed_base_url:
        raise FormatError(NO_BASE_URL)
    if size == 0:
        raise FormatError("empty file")
    check_zip(part)
    name = parse_build_name(relpath.rsplit("/", 1)[-1], settings)
    sidecar = read_sidecar(part, "ota-build")  # none yet: the defaults (enabled, no build_id)
    return OtaBuild(
        codename=codename,
        variant=name.variant,
        version=name.version,
        date=name.date,
        blob=Blob(relpath, size, sha256),
        build_id=build_id_of(codename, relpath.rsplit("/", 1)[-1], sidecar),
        enabled=sidecar["enabled"],
        extra=name.extra,
        x86_type=name.x86_type,
    )


def _link_into_place(part: Path, target: Path) -> None:
    """Make ``part`` appear at ``target`` in one step, never replacing an existing file there
    (two uploads of one name race to the same link; the loser gets duplicate_build)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = part
    staged: Path | None = None
    try:
        try:
            os.link(part, target)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            # another file system (data and repo apart): copy beside the target first
            staged = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}.zip")
            with part.open("rb") as src, staged.open("wb") as out:
                shutil.copyfileobj(src, out, BLOCK)
                out.flush()
                os.fsync(out.fileno())
            source = staged
            os.link(source, target)
    except FileExistsError as exc:
        raise _shipper(400, "duplicate_build", "The build already exists in the system!") from exc
    finally:
        if staged is not None:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
    os.chmod(target, 0o644)
    fsync_dir(target.parent)
    with contextlib.suppress(FileNotFoundError):
        part.unlink()


async def single_request_upload(request: Request) -> Response:
    """``POST …/chunked_upload/`` with the whole ``file``, ``filename`` and ``sha256`` at once (a
    library feature shippy does not use): one chunk, streamed and hashed on the way, then
    completion."""
    user = await authenticate(request)
    if int(request.headers.get("content-length") or 0) > MAX_BYTES + BLOCK:
        raise _detail(400, f"Size of file exceeds the limit ({MAX_BYTES} bytes)")
    ups = uploads(request)
    upload_id = str(uuid.uuid4())
    fd = await _lock_part(ups.part(upload_id), create=True)
    row: dict[str, Any] | None = None
    try:
        writer = HashedWriter(fd, 0, (hashlib.sha256(),))
        try:
            form = await _read_form(request, writer)
            await writer.close()
        except BaseException:
            await writer.abort()
            raise
        if not form.has_file:
            raise _detail(400, "No chunk file was submitted")
        filename = _validate_filename(form.fields.get("filename"))
        checksum = form.fields.get(CHECKSUM_TYPE)
        if not checksum:
            raise _detail(400, f"Checksum of type '{CHECKSUM_TYPE}' is required")
        size = form.file_size
        if size > MAX_BYTES:
            raise _detail(400, f"Size of file exceeds the limit ({MAX_BYTES} bytes)")
        row = _new_upload(user, filename, size, upload_id)
        row["offset"] = size
        ups.table.insert(row)
        HASHES.put(upload_id, size, writer.digests[0])
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            ups.part(upload_id).unlink()
        HASHES.drop(upload_id)
        raise
    os.close(fd)  # _complete takes the lock again
    try:
        result = await run_in_threadpool(_complete, ups, user, row, checksum)
    except Exception:
        await run_in_threadpool(_delete, ups, row)
        raise
    await rebuild(request, changed=[build_relpath(ups.settings, filename)])
    return JSONResponse(result)


def routes() -> list[BaseRoute]:
    base = "/api/v1/maintainers/chunked_upload/"
    one = base + "{pk}/"
    return [
        Route(base, list_uploads, methods=["GET", "HEAD"]),
        Route(base, put_chunk, methods=["PUT"], name="shipper_chunked_upload_start"),
        Route(base, single_request_upload, methods=["POST"]),
        Route(one, get_upload, methods=["GET", "HEAD"], name="shipper_chunked_upload_one"),
        Route(one, put_chunk, methods=["PUT"]),
        Route(one, complete, methods=["POST"]),
    ]
