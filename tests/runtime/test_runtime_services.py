"""The runtime's shared services on real SQLite files and a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from runtime.accounts import AccountError, Accounts
from runtime.errors import HANDLERS
from runtime.passwords import hash_password, verify_password
from runtime.rebuild import Rebuilder
from runtime.signing import ExpiringLinks, LinkError
from runtime.storage import SCHEMAS, open_database
from runtime.tokens import Tokens
from runtime.uploads import UploadIncompleteError, UploadTooLargeError, commit, receive_to_temp
from tests.support.database import dump_database
from tests.support.device_index import package, platform_packages
from tests.support.serving import copy_demo_repo, depot_command, serve_app

# -- storage -------------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # the SQLite file itself
def test_database_is_created_in_wal_mode_at_the_newest_schema(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    assert (tmp_path / "depot.db").exists()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = dict(db.execute("select namespace, version from schema_versions").fetchall())
    assert versions == {name: len(steps) for name, steps in SCHEMAS.items()}
    assert {"users", "tokens"} <= set(db.table_names())
    db.close()
    again = open_database(tmp_path)  # opening twice migrates nothing and loses nothing
    assert dict(again.execute("select namespace, version from schema_versions").fetchall()) == versions


def test_data_survives_reopening(tmp_path: Path) -> None:
    Accounts(open_database(tmp_path)).add("alice", "correct horse")
    assert Accounts(open_database(tmp_path)).authenticate("alice", "correct horse") is not None


# -- passwords and accounts ---------------------------------------------------------------------


def test_password_hashes_are_slow_salted_and_verifiable() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second  # salted
    assert first.startswith("scrypt$")
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "garbage")


def test_accounts(tmp_path: Path) -> None:
    accounts = Accounts(open_database(tmp_path))
    user = accounts.add("maintainer", "long enough", devices=["bullhead", "angler", "bullhead"])
    assert user.devices == ("angler", "bullhead")
    assert not user.staff
    assert accounts.authenticate("maintainer", "long enough") == user
    assert accounts.authenticate("maintainer", "wrong password") is None
    assert accounts.authenticate("nobody", "long enough") is None
    updated = accounts.add("maintainer", "another password", staff=True)
    assert updated.id == user.id and updated.staff
    assert accounts.authenticate("maintainer", "long enough") is None
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add("bob", "short")
    for bad in ("../etc", "", "a b", "x" * 65):
        with pytest.raises(AccountError, match="invalid user name"):
            accounts.add(bad, "long enough")


def test_database_holds_no_plain_password(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    Accounts(db).add("alice", "plain-text-password")
    assert "plain-text-password" not in dump_database(db)
    if db.engine == "sqlite":  # and not in any page of the file or its WAL
        assert b"plain-text-password" not in (tmp_path / "depot.db").read_bytes()
        wal = tmp_path / "depot.db-wal"
        assert not wal.exists() or b"plain-text-password" not in wal.read_bytes()


def test_user_add_command(tmp_path: Path) -> None:
    data = tmp_path / "var"

    def add(*args: str, password: str = "a good password\n") -> subprocess.CompletedProcess:
        return subprocess.run(
            depot_command("user", "add", *args, "--data", str(data), "--password-stdin"),
            input=password,
            capture_output=True,
            text=True,
        )

    result = add("carol", "--staff", "--devices", "bullhead,angler")
    assert result.returncode == 0, result.stderr
    assert "carol" in result.stdout
    user = Accounts(open_database(data)).authenticate("carol", "a good password")
    assert user is not None and user.staff and user.devices == ("angler", "bullhead")
    assert "a good password" not in result.stdout + result.stderr
    short = add("dave", password="short\n")
    assert short.returncode != 0
    assert "at least 8" in short.stderr
    assert Accounts(open_database(data)).get("dave") is None


# -- tokens -------------------------------------------------------------------------------------


def test_tokens_are_shown_once_and_stored_as_hashes(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    user = Accounts(db).add("alice", "long enough")
    tokens = Tokens(db)
    token, raw = tokens.create(user.id, "ci", name="pipeline")
    assert raw.startswith("depot_ci_")
    assert token.prefix == raw[: len(token.prefix)]
    stored = [row["token_hash"] for row in db.table("tokens").rows_where()]
    assert raw not in stored and raw not in dump_database(db)
    if db.engine == "sqlite":
        assert raw not in (tmp_path / "depot.db").read_bytes().decode("latin-1")
    assert tokens.verify(raw, "ci").id == token.id
    assert tokens.get(token.id).last_used is not None
    assert tokens.verify(raw + "x", "ci") is None
    assert tokens.verify(raw, "ota") is None  # another purpose
    assert tokens.revoke(token.id)
    assert tokens.verify(raw, "ci") is None
    assert not tokens.revoke(token.id)


def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    user = Accounts(db).add("alice", "long enough")
    tokens = Tokens(db)
    _, raw = tokens.create(user.id, "ci", expires_in=timedelta(seconds=-1))
    assert tokens.verify(raw, "ci") is None
    _, fresh = tokens.create(user.id, "ci", expires_in=timedelta(days=1))
    assert tokens.verify(fresh, "ci") is not None
    assert [t.name for t in tokens.list(user.id, "ci")] == ["", ""]


# -- signed links -------------------------------------------------------------------------------


def test_signed_links_expire_and_resist_tampering() -> None:
    links = ExpiringLinks("secret", "purchase")
    now = time.time()
    token = links.make({"app": "com.example", "user": 1}, expires_in=600, now=now)
    assert links.open(token, now=now + 599) == {"app": "com.example", "user": 1}
    with pytest.raises(LinkError) as expired:
        links.open(token, now=now + 600)
    assert expired.value.reason == "expired"
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(LinkError) as bad:
        links.open(tampered, now=now)
    assert bad.value.reason == "invalid"
    with pytest.raises(LinkError):
        ExpiringLinks("other secret", "purchase").open(token, now=now)
    with pytest.raises(LinkError):
        ExpiringLinks("secret", "session").open(token, now=now)


# -- streaming uploads --------------------------------------------------------------------------

LIMIT = 64 * 1024


def upload_app(folder: Path) -> Starlette:
    async def upload(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        try:
            received = await receive_to_temp(request.stream(), folder, LIMIT, int(length) if length else None)
        except UploadTooLargeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=413)
        except UploadIncompleteError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        commit(received, folder / request.path_params["name"])
        return JSONResponse({"size": received.size, "sha256": received.sha256}, status_code=201)

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("secret internals")

    return Starlette(
        routes=[Route("/upload/{name}", upload, methods=["PUT"]), Route("/boom", boom)],
        exception_handlers=HANDLERS,
    )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_streaming_upload_lands_complete(tmp_path: Path) -> None:
    import hashlib

    body = bytes(range(256)) * 200
    with serve_app(upload_app(tmp_path)) as url:
        response = httpx.put(url + "/upload/ok.bin", content=iter([body[:1000], body[1000:]]))
    assert response.status_code == 201
    assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert (tmp_path / "ok.bin").read_bytes() == body
    assert files_in(tmp_path) == ["ok.bin"]


def test_oversized_upload_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "kept.bin").write_bytes(b"already stored")
    with serve_app(upload_app(tmp_path)) as url:
        declared = httpx.put(url + "/upload/kept.bin", content=b"x" * (LIMIT + 1))
        chunked = httpx.put(url + "/upload/kept.bin", content=iter([b"x" * 40_000, b"x" * 40_000]))
    for response in (declared, chunked):
        assert response.status_code == 413
        assert str(LIMIT) in response.json()["detail"]
    assert files_in(tmp_path) == ["kept.bin"]
    assert (tmp_path / "kept.bin").read_bytes() == b"already stored"


def test_upload_cut_off_mid_body_leaves_nothing(tmp_path: Path) -> None:
    with serve_app(upload_app(tmp_path)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"PUT /upload/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n" + b"y" * 20_000
            )
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and files_in(tmp_path):
            time.sleep(0.05)
    assert files_in(tmp_path) == []


def test_unexpected_errors_leak_no_traceback(tmp_path: Path) -> None:
    with serve_app(upload_app(tmp_path)) as url:
        response = httpx.get(url + "/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "secret internals" not in response.text and "Traceback" not in response.text


# -- rebuild trigger ----------------------------------------------------------------------------


def test_rebuilder_publishes_a_new_file_before_returning(tmp_path: Path) -> None:
    from builder.device.module import pack_module

    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    rebuilder = Rebuilder(repo, site)

    async def scenario() -> list[int]:
        first = await rebuilder.rebuild()
        pack_module(repo / "modules" / "new.1.0.0.pi64.tar.gz", {"a": b"b"})
        results = await asyncio.gather(*(rebuilder.rebuild() for _ in range(3)))
        return [len(first.written), *(len(r.written) for r in results)]

    written = asyncio.run(scenario())
    assert written[0] > 0 and written[1] > 0 and written[2:] == [0, 0]
    new = package(platform_packages(site, "pi64"), "new")
    assert [v["filename"] for v in new["versions"]] == ["new.1.0.0.pi64.tar.gz"]


@pytest.mark.sqlite_only  # the SQLite file itself
def test_database_is_usable_from_another_process_while_open(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    Accounts(db).add("alice", "long enough")
    other = sqlite3.connect(tmp_path / "depot.db")
    assert other.execute("select name from users").fetchall() == [("alice",)]
