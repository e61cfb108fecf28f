"""The chunked upload hashes its chunks as they arrive: completion never reads the part file
again (only the zip check's central directory), a process that lost the running hash (a
restart) hashes what is on disk once and reports the right SHA-256, and a part file that lost
acknowledged bytes sends the client back to what it holds."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import builder.hashing
import runtime.shipper.upload as upload_module
from runtime.app import create_app
from runtime.config import Limits, RuntimeConfig
from tests.support.database import store_database
from tests.support.serving import serve_store
from tests.support.shipper import NO_THROTTLE, add_user, login, make_repo, ota_zip

BASE = "/api/v1/maintainers/chunked_upload/"
CHUNK = 100_000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(client, auth, name: str, data: bytes, start: int, upload_id: str | None = None):
    url = f"{BASE}{upload_id}/" if upload_id else BASE
    headers = {**auth, "Content-Range": f"bytes {start}-{start + len(data) - 1}/{TOTAL[name]}"}
    return client.put(url, headers=headers, data={"filename": name}, files={"file": ("file", data)})


TOTAL: dict[str, int] = {}


def _send(client, auth, name: str, data: bytes, start: int = 0, upload_id: str | None = None) -> str:
    TOTAL[name] = len(data)
    while start < len(data):
        answer = _put(client, auth, name, data[start : start + CHUNK], start, upload_id)
        assert answer.status_code == 200, answer.text
        upload_id = answer.json()["id"]
        start += CHUNK
    assert upload_id is not None
    return upload_id


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    config = RuntimeConfig(
        repo=repo.resolve(),
        site=(tmp_path / "site").resolve(),
        data=(tmp_path / "var").resolve(),
        secret_key="k" * 40,
        limits=Limits(),  # no rate limits
    )
    upload_module.HASHES.__init__()  # type: ignore[misc]
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client, repo


def _count_reads(monkeypatch: pytest.MonkeyPatch, part_folder: Path) -> list[int]:
    """Bytes read from files in ``part_folder`` through os.read/os.pread and sha256_file."""
    read: list[int] = []
    real_pread, real_sha = os.pread, builder.hashing.sha256_file

    def pread(fd: int, n: int, offset: int) -> bytes:
        block = real_pread(fd, n, offset)
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(part_folder)):
            read.append(len(block))
        return block

    def sha256_file(path: Path, progress=None):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(part_folder)):
            read.append(path.stat().st_size)
        return real_sha(path, progress)

    monkeypatch.setattr(upload_module.os, "pread", pread)
    monkeypatch.setattr(upload_module, "sha256_file", sha256_file)
    return read


def test_completion_does_not_read_the_part_file_again(
    app_client: tuple[TestClient, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, repo = app_client
    auth = login(client)  # type: ignore[arg-type]
    name = "Bliss-v14.5-bullhead-OFFICIAL-gapps-20200705.zip"
    data = ota_zip(tmp_path / name, size=1_234_567, seed="hashing")
    reads = _count_reads(monkeypatch, tmp_path / "var" / "shipper-uploads")
    zip_reads: list[str] = []
    real_check_zip = upload_module.check_zip
    monkeypatch.setattr(upload_module, "check_zip", lambda p: (zip_reads.append(str(p)), real_check_zip(p)))
    upload_id = _send(client, auth, name, data)
    done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data)})
    assert done.status_code == 200, done.text
    assert reads == []  # neither the chunks nor the completion hashed the part file from disk
    assert len(zip_reads) == 1  # the zip check (central directory) is the one look at its bytes
    assert (repo / "builds/bullhead" / name).read_bytes() == data
    sidecar = (repo / "builds/bullhead" / f"{name}.sha256").read_text()
    assert sidecar == f"{_sha(data)}  {name}\n"
    feed = client.get("/api/v1/updater/los/bullhead/gapps/").json()["response"]
    assert next(e for e in feed if e["filename"] == name)["id"] == _sha(data)


def test_a_wrong_checksum_is_refused_without_reading(
    app_client: tuple[TestClient, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, repo = app_client
    auth = login(client)  # type: ignore[arg-type]
    name = "Bliss-v14.6-bullhead-OFFICIAL-gapps-20200706.zip"
    data = ota_zip(tmp_path / name, size=350_000, seed="wrong")
    reads = _count_reads(monkeypatch, tmp_path / "var" / "shipper-uploads")
    upload_id = _send(client, auth, name, data)
    wrong = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data[:-1] + b"x")})
    assert (wrong.status_code, wrong.json()) == (400, {"detail": "checksum does not match"})
    assert reads == []
    assert not (repo / "builds/bullhead" / name).exists()


def test_a_cut_off_chunk_is_not_hashed_into_the_upload(
    app_client: tuple[TestClient, Path], tmp_path: Path
) -> None:
    """A chunk refused after part of its body was written (its size does not match the header)
    leaves neither bytes nor hash behind: the resent chunk completes with the file's SHA-256."""
    client, repo = app_client
    auth = login(client)  # type: ignore[arg-type]
    name = "Bliss-v14.7-bullhead-OFFICIAL-gapps-20200707.zip"
    data = ota_zip(tmp_path / name, size=300_000, seed="cut")
    TOTAL[name] = len(data)
    upload_id = _put(client, auth, name, data[:CHUNK], 0).json()["id"]
    short = client.put(
        f"{BASE}{upload_id}/",
        headers={**auth, "Content-Range": f"bytes {CHUNK}-{2 * CHUNK - 1}/{len(data)}"},
        data={"filename": name},
        files={"file": ("file", data[CHUNK : CHUNK + 5000])},
    )
    assert short.status_code == 400
    assert (tmp_path / "var" / "shipper-uploads" / f"{upload_id}.part").stat().st_size == CHUNK
    _send(client, auth, name, data, start=CHUNK, upload_id=upload_id)
    done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data)})
    assert done.status_code == 200, done.text
    assert (repo / "builds/bullhead" / name).read_bytes() == data


def test_a_restart_mid_upload_recovers_the_hash(tmp_path: Path) -> None:
    """`depot serve` killed halfway through an upload: the next process has no running hash,
    hashes the part file's acknowledged bytes once, takes the rest of the chunks, and completes
    with the SHA-256 of the real file (the feed's id and the sidecar say so)."""
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    name = "Bliss-v14.8-bullhead-OFFICIAL-gapps-20200708.zip"
    data = ota_zip(tmp_path / name, size=650_000, seed="restart")
    TOTAL[name] = len(data)
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as first, first.client() as client:
        auth = login(client)
        upload_id = _put(client, auth, name, data[:CHUNK], 0).json()["id"]
        for start in range(CHUNK, 3 * CHUNK, CHUNK):
            assert _put(client, auth, name, data[start : start + CHUNK], start, upload_id).status_code == 200
        # a chunk cut off by the kill: bytes past the acknowledged offset, never acknowledged
        with (tmp_path / "var" / "shipper-uploads" / f"{upload_id}.part").open("ab") as part:
            part.write(b"garbage of a chunk the client never saw acknowledged")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as second, second.client() as client:
        auth = login(client)
        offset = client.get(f"{BASE}{upload_id}/", headers=auth).json()["offset"]
        assert offset == 3 * CHUNK
        _send(client, auth, name, data, start=offset, upload_id=upload_id)
        done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data)})
        assert done.status_code == 200, done.text
        published = repo / "builds" / "bullhead" / name
        assert published.read_bytes() == data
        assert (
            published.with_name(name + ".sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
        )
        feed = client.get("/api/v1/updater/los/bullhead/gapps/").json()["response"]
        assert next(e for e in feed if e["filename"] == name)["id"] == hashlib.sha256(data).hexdigest()


def test_a_restart_right_before_completion_hashes_the_file_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    name = "Bliss-v14.9-bullhead-OFFICIAL-gapps-20200709.zip"
    data = ota_zip(tmp_path / name, size=420_000, seed="before-completion")
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as first, first.client() as client:
        upload_id = _send(client, login(client), name, data)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as second, second.client() as client:
        auth = login(client)
        wrong = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": "0" * 64})
        assert wrong.status_code == 400  # the hash from disk is the file's, not whatever is claimed
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as third, third.client() as client:
        auth = login(client)
        upload_id = _send(client, auth, name, data)
        third.process.send_signal(signal.SIGKILL)
        third.process.wait()
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as fourth, fourth.client() as client:
        auth = login(client)
        done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data)})
        assert done.status_code == 200, done.text
        assert (repo / "builds" / "bullhead" / name).read_bytes() == data


def test_a_part_file_that_lost_bytes_sends_the_client_back(tmp_path: Path) -> None:
    """After a power loss the part file may hold fewer bytes than the stored offset: the next
    chunk is refused with the offset the file really reaches, and the upload resumes from it."""
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    name = "Bliss-v14.10-bullhead-OFFICIAL-gapps-20200710.zip"
    data = ota_zip(tmp_path / name, size=400_000, seed="lost")
    TOTAL[name] = len(data)
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as first, first.client() as client:
        auth = login(client)
        upload_id = _put(client, auth, name, data[:CHUNK], 0).json()["id"]
        assert _put(client, auth, name, data[CHUNK : 2 * CHUNK], CHUNK, upload_id).status_code == 200
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    part = tmp_path / "var" / "shipper-uploads" / f"{upload_id}.part"
    os.truncate(part, CHUNK + 123)  # what the disk kept
    with store_database(tmp_path / "var") as db:
        assert (
            db.execute('SELECT "offset" FROM shipper_uploads WHERE id = ?', [upload_id]).fetchone()[0]
            == 2 * CHUNK
        )
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as second, second.client() as client:
        auth = login(client)
        refused = _put(client, auth, name, data[2 * CHUNK : 3 * CHUNK], 2 * CHUNK, upload_id)
        assert refused.status_code == 400
        assert refused.json() == {
            "detail": "Offsets do not match",
            "expected_offset": CHUNK + 123,
            "provided_offset": 2 * CHUNK,
        }
        offset = client.get(f"{BASE}{upload_id}/", headers=auth).json()["offset"]
        assert offset == CHUNK + 123
        _send(client, auth, name, data, start=offset, upload_id=upload_id)
        done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": _sha(data)})
        assert done.status_code == 200, done.text
        assert (repo / "builds" / "bullhead" / name).read_bytes() == data
