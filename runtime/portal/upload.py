"""``POST /portal/api/uploads/ci``: authorise, stream, inspect, decide, store: in that order.

The CI token is authenticated (endpoints) and its account checked before one byte of the body
is read; a body whose Content-Length is over the limit is refused (413) unread. The APK streams
to a temporary file (bounded memory, size limit, SHA-256 on the way). Its manifest is read (at
most 4 MiB, see :mod:`builder.portal.apk`) and the token's scope compared with the package name
(403) before the expensive part: every entry's digest and the v2/v3 content digests, all of it
bounded by the reader's caps. Any APK the reader cannot take is 422 with the reader's stable
code, never a 500. All of that happens before anything is recorded. The decision
(ownership 403, retry replay, versionCode 409; the scope once more) and the writes happen in one
``BEGIN IMMEDIATE`` transaction, so two uploads of one package cannot both pass the versionCode
check. The file is renamed into ``<data>/portal/apks/<version id>.apk`` inside that transaction
and removed again if it rolls back: a refused or cut-off upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from builder.errors import SettingsError
from builder.portal.apk import ApkError, ApkInfo, inspect_apk, read_manifest
from runtime.accounts import Accounts
from runtime.clock import now_iso
from runtime.errors import ApiError
from runtime.multipart import FormError, OtherPartsTooLargeError, multipart_boundary, stream_form
from runtime.portal.errors import error
from runtime.portal.review import stored_apk
from runtime.portal.store import app_by_package, new_id, one
from runtime.portal.validation import load_policy
from runtime.storage import transaction
from runtime.tokens import Token
from runtime.uploads import (
    ReceivedFile,
    UploadIncompleteError,
    UploadTooLargeError,
    commit,
    hashed_temp,
)

log = logging.getLogger("runtime.portal.upload")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
APK_PART = "apk"
MAX_OTHER_PARTS = 64 * 1024  # bytes of non-file parts (names, stray fields) we tolerate


def _error(status: int, code: str, message: str, **details: Any) -> Exception:

    return error(status, code, message, **details)


async def handle_upload(request: Request, svc: Any, token: Token) -> tuple[dict[str, Any], int, str | None]:
    """(body, status, id of a validation run to start) for an authenticated upload."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise _error(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 visible ASCII characters."
        )
    expected_sha = request.headers.get("x-content-sha256", "").strip().lower() or None
    try:
        policy = await run_in_threadpool(load_policy, svc.config.repo)
    except SettingsError as exc:  # refuse before anything is stored: the client may retry
        log.error("portal upload refused, depot.toml cannot be used:\n%s", exc)
        raise _error(
            503, "settings_unusable", "The store's settings cannot be used right now; try again later."
        ) from exc
    limit = min(svc.config.max_upload_bytes, policy.upload_limit_bytes)
    # Authorised before the body is read: the token is live (endpoints.bearer_token) and so is
    # its account; a declared body over the limit is refused without reading it.
    if await run_in_threadpool(lambda: Accounts(svc.storage.db).by_id(token.user_id)) is None:
        raise _error(401, "token_invalid", "The account of this token no longer exists.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MAX_OTHER_PARTS:
        raise _error(413, "upload_too_large", f"The APK exceeds the upload limit of {limit} bytes.")
    incoming = svc.config.data / "portal" / "incoming"
    try:
        received = await receive_apk(request, incoming, limit)
    except OtherPartsTooLargeError as exc:
        raise _error(400, "invalid_multipart", "the form carries too much besides the APK") from exc
    except FormError as exc:
        raise _error(400, "invalid_multipart", str(exc)) from exc
    except UploadTooLargeError as exc:
        raise _error(
            413, "upload_too_large", f"The APK exceeds the upload limit of {exc.limit} bytes."
        ) from exc
    except (UploadIncompleteError, ClientDisconnect) as exc:
        raise _error(
            400, "upload_incomplete", f"The upload was cut off: {exc or 'client went away'}."
        ) from exc
    try:
        if received.size == 0:
            raise _error(422, "apk_malformed", "The APK part is empty.")
        if expected_sha is not None and expected_sha != received.sha256:
            raise _error(
                400,
                "checksum_mismatch",
                "The body's SHA-256 differs from X-Content-SHA256.",
                received_sha256=received.sha256,
            )
        try:
            info = await run_in_threadpool(_inspect, received, token)
        except ApkError as exc:
            raise _error(422, exc.code, str(exc)) from exc
        except ApiError:  # the token's scope (403)
            raise
        except Exception as exc:  # a reader bug must not become a 500 for the client
            log.exception("the APK reader failed on an upload")
            raise _error(422, "apk_malformed", "The APK could not be read.") from exc
        return await run_in_threadpool(_accept, svc, token, received, info, key)
    finally:
        received.discard()  # a no-op once the file was committed under its final name


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body, refused once it is longer than an APK at the limit and the other parts' cap."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit + MAX_OTHER_PARTS:
            raise UploadTooLargeError(limit)
        yield chunk


async def receive_apk(request: Request, folder: Path, limit: int) -> ReceivedFile:
    """The form's ``apk`` part, streamed to a temporary file in ``folder`` and hashed as it
    arrives (bounded memory; :class:`runtime.uploads.HashedWriter`), fsynced. The first part
    named ``apk`` is the APK, with or without a filename; the other parts' data (fields, other
    files, a repeated ``apk``) may add up to :data:`MAX_OTHER_PARTS`, their number is free and
    none is kept. FormError for a body that is no such form (OtherPartsTooLargeError past that
    cap), UploadTooLargeError past ``limit``, UploadIncompleteError when the body ends inside
    the APK part; the temporary file is gone after any failure."""
    boundary = multipart_boundary(request.headers.get("content-type", ""))
    if boundary is None:
        raise FormError(f"the body must be multipart/form-data with a file part named {APK_PART!r}")
    async with hashed_temp(folder) as upload:
        writer = upload.writer

        async def write(piece: bytes | memoryview) -> None:
            if writer.size + len(piece) > limit:
                raise UploadTooLargeError(limit)
            await writer.write(piece)

        async def sink() -> Any:
            return write

        form = await stream_form(
            _capped(request.stream(), limit),
            boundary,
            APK_PART,
            sink,
            max_files=None,
            max_fields=None,
            max_other_bytes=MAX_OTHER_PARTS,
            keep_first=True,
            keep_fields=False,
            nameless_file=True,
            require_end=False,  # a body cut off after the APK part still carries the whole APK
        )
        await upload.close()
        if not form.has_file:
            raise FormError(f"the form has no file part named {APK_PART!r}")
        if not form.file_complete:
            raise UploadIncompleteError("the body ended in the middle of the APK part")
    return upload.received()


def _inspect(received: ReceivedFile, token: Token) -> ApkInfo:
    """Read the manifest, check the token's scope, then verify everything (ApkError on bad input).

    The scope is a package name, and the package name is only known from the APK's binary
    AndroidManifest.xml: it cannot be compared before the body has arrived and that one entry is
    read. It is compared right after, before the signature checks, which read every entry; so a
    token scoped to another package costs at most the bounded manifest read."""
    manifest, _ = read_manifest(received.path)
    _check_scope(token, manifest.package)
    return inspect_apk(received.path)


def _check_scope(token: Token, package: str) -> None:
    if token.scope and token.scope != package:
        raise _error(
            403,
            "token_scope",
            f"This CI token may only upload {token.scope}, not {package}.",
            package=package,
        )


def _accept(
    svc: Any, token: Token, received: ReceivedFile, info: ApkInfo, key: str | None
) -> tuple[dict[str, Any], int, str | None]:
    db = svc.storage.db
    m = info.manifest
    _check_scope(token, m.package)
    target = None
    try:
        with transaction(db):
            app = app_by_package(db, m.package)
            if app is not None and app["owner_id"] != token.user_id:
                raise _error(
                    403,
                    "package_not_owned",
                    f"The package {m.package} belongs to another account.",
                    package=m.package,
                )
            if key is not None:
                seen = one(
                    db, "SELECT * FROM portal_idempotency WHERE user_id = ? AND key = ?", [token.user_id, key]
                )
                if seen is not None:
                    if seen["sha256"] != received.sha256:
                        raise _error(
                            409,
                            "idempotency_key_reused",
                            "This Idempotency-Key was used for a different APK.",
                            version_id=seen["version_id"],
                        )
                    return _replay(db, seen["version_id"])
            if app is not None:
                same = one(
                    db,
                    "SELECT id FROM portal_versions WHERE app_id = ? AND sha256 = ?",
                    [app["id"], received.sha256],
                )
                if same is not None:
                    _remember_key(db, token, key, received.sha256, same["id"])
                    return _replay(db, same["id"])
                highest = db.execute(
                    "SELECT max(version_code) FROM portal_versions WHERE app_id = ?", [app["id"]]
                ).fetchone()[0]
                if highest is not None and m.version_code <= highest:
                    raise _error(
                        409,
                        "version_code_not_incremented",
                        f"versionCode {m.version_code} is not higher than {highest}, "
                        f"the highest versionCode of {m.package} so far.",
                        version_code=m.version_code,
                        highest_version_code=highest,
                    )
                app_id = app["id"]
            else:
                app_id = new_id()
                db.execute(
                    "INSERT INTO portal_apps (id, package, owner_id, created) VALUES (?, ?, ?, ?)",
                    [app_id, m.package, token.user_id, now_iso()],
                )
            version_id, now = new_id(), now_iso()
            run_id = new_id()
            body = {
                "version": {
                    "id": version_id,
                    "app_id": app_id,
                    "version_code": m.version_code,
                    "version_name": m.version_name,
                    "status": "draft",
                },
                "validation_run": {"id": run_id, "status": "running"},
                "sha256": received.sha256,
                "size": received.size,
            }
            signer = info.signature.signers[0]
            facts = {
                "min_sdk": m.min_sdk,
                "target_sdk": m.target_sdk,
                "debuggable": m.debuggable,
                "permissions": list(m.permissions),
                "abis": list(info.abis),
                "signer_subject": signer.subject,
                "signer_subject_attributes": [list(a) for a in signer.subject_attributes],
                "signer_sha1": signer.sha1,
                "schemes": info.signature.verified_schemes,
            }
            db.execute(
                """INSERT INTO portal_versions (id, app_id, version_code, version_name, status, sha256, size,
                   facts, signer_sha256, uploaded_by, token_id, response, created, updated)
                   VALUES (?, ?, ?, ?, 'draft', ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    version_id,
                    app_id,
                    m.version_code,
                    m.version_name,
                    received.sha256,
                    received.size,
                    json.dumps(facts),
                    signer.sha256,
                    token.user_id,
                    token.id,
                    json.dumps(body),
                    now,
                    now,
                ],
            )
            db.execute(
                "INSERT INTO portal_runs (id, version_id, status, created) VALUES (?, ?, 'running', ?)",
                [run_id, version_id, now],
            )
            _remember_key(db, token, key, received.sha256, version_id)
            target = commit(received, stored_apk(svc.config.data, version_id))
    except BaseException:
        if target is not None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        raise
    return body, 201, run_id


def _remember_key(db: Any, token: Token, key: str | None, sha256: str, version_id: str) -> None:
    if key is not None:
        db.execute(
            "INSERT INTO portal_idempotency (user_id, key, sha256, version_id, created)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [token.user_id, key, sha256, version_id, now_iso()],
        )


def _replay(db: Any, version_id: str) -> tuple[dict[str, Any], int, None]:
    row = one(db, "SELECT response FROM portal_versions WHERE id = ?", [version_id])
    assert row is not None
    return json.loads(row["response"]), 201, None
