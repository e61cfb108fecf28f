"""Resumable, verified downloads.

A download grows ``<file>.part`` on disk. Each attempt asks for the missing tail with
``Range: bytes=N-`` and ``If-Range`` (the validator the store gave for the bytes already held),
and appends only when the answer is a 206 whose ``Content-Range`` is exactly
``bytes N-(size-1)/size``; a 200 (a store that ignores Range, or a file that changed) starts over.
A broken connection is retried with exponential back-off; the failure budget is reset whenever an
attempt brought new bytes, so a flaky link that keeps moving finishes. Size and SHA-256 from the
index are checked before the file is given its final name. Only the store's origin and the
mirrors' are fetched from; a redirect elsewhere fails the download at once (see net.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from builder.atomic import atomic_write, fsync_dir
from builder.hashing import sha256_file
from runtime.agent.net import ForeignOriginError, Origins, open_get

MAX_BACKOFF = 60.0
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(Exception):
    """A download that will not succeed by retrying; the message says why."""


@dataclass
class Wanted:
    url: str
    size: int
    sha256: str


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".meta")


def _load_meta(part: Path) -> dict:
    try:
        return json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return {}


def _validator(response: httpx.Response) -> str | None:
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("last-modified")


def discard(part: Path) -> None:
    for path in (part, _meta_path(part)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def download(
    wanted: Wanted,
    dest: Path,
    *,
    log: Callable[[str], None],
    progress: Callable[[int, int], None],
    retries: int = 8,
    retry_delay: float = 1.0,
    timeout: float = 30.0,
    origins: Origins | None = None,
) -> None:
    """Fetch ``wanted`` into ``dest`` (atomically, verified); raises DownloadError.

    ``origins``: where the URL and any redirect may lead (default: the URL's own origin)."""
    try:
        origins = origins or Origins(wanted.url)
        origins.check(wanted.url, "the download")
    except (ValueError, ForeignOriginError) as exc:
        raise DownloadError(str(exc)) from exc
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and sha256_file(dest) == (wanted.size, wanted.sha256):
        log("already downloaded and verified (the agent restarted after the rename)")
        progress(wanted.size, wanted.size)
        return
    meta = _load_meta(part)
    if meta.get("url") != wanted.url or meta.get("sha256") != wanted.sha256:
        discard(part)  # bytes of another file (or none): start clean
        meta = {"url": wanted.url, "sha256": wanted.sha256, "validator": None}
        atomic_write(_meta_path(part), json.dumps(meta).encode())
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > wanted.size:
            log(f"partial file is larger than {wanted.size} bytes; starting over")
            discard(part)
            atomic_write(_meta_path(part), json.dumps(meta).encode())
            have = 0
        if have == wanted.size:
            break
        if have:
            log(f"resuming at byte {have} of {wanted.size}")
        progress(have, wanted.size)
        before = have
        try:
            have = _attempt(wanted, part, have, meta, log, progress, timeout, origins)
        except ForeignOriginError as exc:  # a redirect elsewhere: retrying will not change it
            raise DownloadError(str(exc)) from exc
        except _RetryableError as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            have = part.stat().st_size if part.exists() else 0
        else:
            continue
        failures = 1 if have > before else failures + 1
        if failures > retries:
            raise DownloadError(f"gave up after {failures} attempts without progress: {error}")
        delay = min(retry_delay * 2 ** (failures - 1), MAX_BACKOFF)
        log(f"attempt failed at byte {have} ({error}); retrying in {delay:g}s")
        time.sleep(delay)
    log("=== checking checksum")
    size, digest = sha256_file(part)
    if size != wanted.size or digest != wanted.sha256:
        discard(part)
        raise DownloadError(
            f"checksum mismatch: expected {wanted.size} bytes with SHA-256 {wanted.sha256}, "
            f"got {size} bytes with SHA-256 {digest}"
        )
    log(f"size {size} and SHA-256 {digest} verified")
    os.replace(part, dest)
    with contextlib.suppress(FileNotFoundError):
        _meta_path(part).unlink()
    fsync_dir(dest.parent)
    progress(size, size)


class _RetryableError(Exception):
    pass


def _attempt(
    wanted: Wanted,
    part: Path,
    have: int,
    meta: dict,
    log: Callable[[str], None],
    progress: Callable[[int, int], None],
    timeout: float,
    origins: Origins,
) -> int:
    """One GET; returns how many bytes the part file holds afterwards."""
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if meta.get("validator"):
            headers["If-Range"] = meta["validator"]
    with (
        httpx.Client(timeout=timeout, follow_redirects=False) as client,
        open_get(client, wanted.url, origins, headers, "the download") as r,
    ):
        if r.status_code == 416:
            raise _RetryableError(f"store answered 416 at byte {have}; starting over")
        if r.status_code in (401, 403, 404, 410):
            raise DownloadError(f"{wanted.url} answered {r.status_code}")
        if r.status_code == 206 and have:
            match = CONTENT_RANGE.match(r.headers.get("content-range", ""))
            if (
                not match
                or (int(match[1]), int(match[2])) != (have, wanted.size - 1)
                or match[3]
                not in (
                    str(wanted.size),
                    "*",
                )
            ):
                _restart(part, meta)
                raise _RetryableError(
                    f"unexpected Content-Range {r.headers.get('content-range')!r}; starting over"
                )
            mode, offset = "r+b", have
        elif r.status_code == 200:
            if have:
                log("the store sent the whole file instead of the range; starting over")
            meta["validator"] = _validator(r)
            atomic_write(_meta_path(part), json.dumps(meta).encode())
            mode, offset = "wb", 0
        else:
            raise _RetryableError(f"store answered {r.status_code}")
        length = r.headers.get("content-length")
        if length is not None and length.isdigit() and offset + int(length) != wanted.size:
            raise DownloadError(
                f"the store sends {offset + int(length)} bytes but the index says {wanted.size}"
            )
        written = offset
        with part.open(mode) as out:
            out.seek(offset)
            out.truncate()
            last_report = 0.0
            try:
                for chunk in r.iter_raw():
                    if written + len(chunk) > wanted.size:
                        raise DownloadError(
                            f"the store sent more than the {wanted.size} bytes the index says"
                        )
                    out.write(chunk)
                    written += len(chunk)
                    stamp = time.monotonic()
                    if stamp - last_report >= 0.1 or written == wanted.size:
                        out.flush()
                        progress(written, wanted.size)
                        last_report = stamp
            finally:
                out.flush()
                os.fsync(out.fileno())
        return written


def _restart(part: Path, meta: dict) -> None:
    discard(part)
    meta["validator"] = None
    atomic_write(_meta_path(part), json.dumps(meta).encode())
