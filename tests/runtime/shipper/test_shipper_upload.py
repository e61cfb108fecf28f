"""shipper's chunked upload against a real `depot serve`: the whole protocol (reference checks 8
and 9), every library and shipper error, resume from the stored offset, expiry; and after every
failure nothing published, nothing half-written, no stray files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support.database import store_database
from tests.support.serving import ServedStore
from tests.support.shipper import BULLHEAD, login, ota_zip, served_fixtures, sha256

BASE = "/api/v1/maintainers/chunked_upload/"
NEW = "Bliss-v14.1-bullhead-OFFICIAL-gapps-20200701.zip"
MB = 1_000_000


store, client, auth = served_fixtures("shipper-upload")


def put(client, auth, name, data, start, total, upload_id=None, content_range=None) -> httpx.Response:
    headers = dict(auth)
    end = start + len(data) - 1
    headers["Content-Range"] = content_range if content_range is not None else f"bytes {start}-{end}/{total}"
    if content_range == "":
        del headers["Content-Range"]
    url = f"{BASE}{upload_id}/" if upload_id else BASE
    return client.put(url, headers=headers, data={"filename": name}, files={"file": ("file", data)})


def upload(client, auth, name, data, chunk=MB, upload_id=None, start=0) -> str:
    """Send ``data`` from ``start`` as shippy does; returns the upload id."""
    while start < len(data):
        piece = data[start : start + chunk]
        response = put(client, auth, name, piece, start, len(data), upload_id)
        assert response.status_code == 200, response.text
        upload_id = response.json()["id"]
        start += len(piece)
    return upload_id


def finish(client, auth, upload_id, data) -> httpx.Response:
    return client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": sha256(data)})


def snapshot(store: ServedStore) -> dict[str, bytes]:
    """repo/ and the upload scratch folder, to prove a failure changed nothing."""
    out = {}
    for root in (store.repo, store.data / "shipper-uploads"):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                out[str(path)] = path.read_bytes()
    return out


def scratch_files(store: ServedStore) -> list[str]:
    folder = store.data / "shipper-uploads"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_full_protocol(client: httpx.Client, auth: dict, store: ServedStore, tmp_path: Path) -> None:
    data = ota_zip(tmp_path / NEW, size=2_500_000)
    first = put(client, auth, NEW, data[:MB], 0, len(data))
    assert first.status_code == 200
    body = first.json()
    assert (body["offset"], body["status"], body["filename"]) == (MB, 1, NEW)
    assert body["url"].endswith(f"/chunked_upload/{body['id']}/")
    upload_id = body["id"]
    assert put(client, auth, NEW, data[MB : 2 * MB], MB, len(data), upload_id).json()["offset"] == 2 * MB
    assert put(client, auth, NEW, data[2 * MB :], 2 * MB, len(data), upload_id).json()["offset"] == 2_500_000
    listed = client.get(BASE, headers=auth)
    assert listed.headers["cache-control"] == "no-store"
    assert {(u["id"], u["filename"], u["offset"]) for u in listed.json()} == {(upload_id, NEW, 2_500_000)}
    done = finish(client, auth, upload_id, data)
    assert done.status_code == 200, done.text
    assert done.json()["message"] == "Build has been uploaded for device LG Nexus 5X (bullhead)!"
    assert isinstance(done.json()["build_id"], int)
    feed = client.get("/api/v1/updater/los/bullhead/gapps/").json()["response"]
    assert feed[0] == {
        "datetime": 1593561600,
        "filename": NEW,
        "id": sha256(data),
        "size": 2_500_000,
        "version": "v14.1",
        "variant": "gapps",
        "url": f"{store.url}/download_check/bullhead/{NEW[:-4]}/",
        "romtype": "OFFICIAL",
    }
    assert client.get(BASE, headers=auth).json() == []
    assert (store.repo / "builds/bullhead" / NEW).read_bytes() == data
    assert (store.repo / "builds/bullhead" / f"{NEW}.sha256").read_text() == f"{sha256(data)}  {NEW}\n"
    assert scratch_files(store) == []
    # the same file again: shipper's duplicate error, at completion
    again = upload(client, auth, NEW, data)
    dup = finish(client, auth, again, data)
    assert dup.status_code == 400
    assert dup.json() == {"error": "duplicate_build", "message": "The build already exists in the system!"}
    assert client.get(f"{BASE}{again}/", headers=auth).status_code == 404


def test_resume_continues_from_the_stored_offset(client: httpx.Client, auth: dict, tmp_path: Path) -> None:
    name = "Bliss-v14.2-bullhead-OFFICIAL-gapps-20200801.zip"
    data = ota_zip(tmp_path / name, size=2_345_678, seed="resume")
    first = put(client, auth, name, data[:MB], 0, len(data))
    upload_id = first.json()["id"]
    put(client, auth, name, data[MB : 2 * MB], MB, len(data), upload_id)
    # the connection dies here; a new run asks the server where it stands
    attempts = [u for u in client.get(BASE, headers=auth).json() if u["filename"] == name]
    assert [(a["id"], a["offset"]) for a in attempts] == [(upload_id, 2 * MB)]
    single = client.get(f"{BASE}{upload_id}/", headers=auth)
    assert single.json()["offset"] == 2 * MB and single.headers["cache-control"] == "no-store"
    upload(client, auth, name, data, upload_id=upload_id, start=attempts[0]["offset"])
    assert finish(client, auth, upload_id, data).status_code == 200
    served = client.get(f"/download_check/bullhead/{name[:-4]}/")
    assert served.content == data


def test_chunk_errors_keep_the_upload(client: httpx.Client, auth: dict, store: ServedStore) -> None:
    name = "Bliss-v14.3-bullhead-OFFICIAL-gapps-20200901.zip"
    upload_id = put(client, auth, name, b"a" * 100, 0, 300).json()["id"]
    cases = [
        (
            dict(start=50),
            400,
            {"detail": "Offsets do not match", "expected_offset": 100, "provided_offset": 50},
        ),
        (dict(content_range=""), 400, {"detail": "Error in request headers"}),
        (dict(content_range="bytes=100-199/300"), 400, {"detail": "Error in request headers"}),
        (
            dict(content_range="bytes 100-199/150"),
            400,
            {"detail": "End of chunk exceeds reported total (150 bytes)"},
        ),
        (
            dict(content_range="bytes 100-149/300"),
            400,
            {"detail": "File size doesn't match headers: file size is 100 but 50 reported"},
        ),
        (
            dict(content_range="bytes 100-199/5000000001"),
            400,
            {"detail": "Size of file exceeds the limit (5000000000 bytes)"},
        ),
    ]
    for kwargs, status, body in cases:
        start = kwargs.pop("start", 100)
        response = put(client, auth, name, b"b" * 100, start, 300, upload_id, **kwargs)
        assert (response.status_code, response.json()) == (status, body), kwargs
    no_file = client.put(
        f"{BASE}{upload_id}/", headers={**auth, "Content-Range": "bytes 100-199/300"}, data={"x": "1"}
    )
    assert (no_file.status_code, no_file.json()) == (400, {"detail": "No chunk file was submitted"})
    assert client.get(f"{BASE}{upload_id}/", headers=auth).json()["offset"] == 100
    assert (store.data / "shipper-uploads" / f"{upload_id}.part").stat().st_size == 100
    assert put(client, auth, name, b"b" * 100, 100, 300, upload_id).json()["offset"] == 200


def test_first_chunk_errors(client: httpx.Client, auth: dict, store: ServedStore) -> None:
    before = scratch_files(store)
    no_name = client.put(
        BASE, headers={**auth, "Content-Range": "bytes 0-9/10"}, files={"file": ("file", b"x" * 10)}
    )
    assert (no_name.status_code, no_name.json()) == (
        400,
        {"detail": {"filename": ["This field is required."]}},
    )
    for bad in ("../../depot.toml.zip", "builds/bullhead/x.zip", ".hidden.zip", "a\\b.zip"):
        response = put(client, auth, bad, b"x" * 10, 0, 10)
        assert response.status_code == 400 and "filename" in response.json()["detail"], bad
    late = put(client, auth, NEW, b"x" * 10, 5, 20)
    assert late.json() == {"detail": "Offsets do not match", "expected_offset": 0, "provided_offset": 5}
    assert scratch_files(store) == before


def test_uploads_are_private(client: httpx.Client, auth: dict) -> None:
    upload_id = put(client, auth, "Bliss-v14-bullhead-OFFICIAL-foss-20200101.zip", b"x" * 10, 0, 20).json()[
        "id"
    ]
    other = login(client, "other_user", "password2")
    assert client.get(BASE, headers=other).json() == []
    for response in (
        client.get(f"{BASE}{upload_id}/", headers=other),
        put(client, other, "x.zip", b"y" * 10, 10, 20, upload_id),
        client.post(f"{BASE}{upload_id}/", headers=other, data={"sha256": "0" * 64}),
    ):
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "No ChunkedUpload matches the given query."},
        )
    assert client.get(f"{BASE}{upload_id}/", headers=auth).status_code == 200
    assert client.get(f"{BASE}not-a-uuid/", headers=auth).status_code == 404
    assert client.get(BASE).status_code == 401


@pytest.mark.parametrize(
    ("name", "status", "body"),
    [
        (
            "Bliss-v14-dream2lte-OFFICIAL-gapps-20200609.zip",
            401,
            {
                "error": "insufficient_permissions",
                "message": "You are not authorized to upload for this device!",
            },
        ),
        (
            "Bliss-v14-zzz-OFFICIAL-gapps-20200609.zip",
            404,
            {"error": "unknown_device", "message": "The specified device does not exist!"},
        ),
        ("whatever.zip", 400, {"error": "invalid_file_name", "message": "The file name is malformed!"}),
        ("Bliss-v14-bullhead-OFFICIAL-gapps-20201399.zip", 400, {"error": "invalid_file_name"}),
        ("Bliss-v14-bullhead-OFFICIAL-milkshake-20200609.zip", 400, {"error": "unsupported_variant"}),
        ("Bliss-v13-bullhead-OFFICIAL-gapps-20200609.zip", 400, {"error": "version_not_allowed"}),
        (f"{BULLHEAD}.zip", 400, {"error": "duplicate_build"}),
        ("Bliss-v14-x86-OFFICIAL-gapps-20200609.zip", 400, {"error": "configuration_error"}),
    ],
)
def test_completion_errors_remove_the_upload(
    client: httpx.Client, auth: dict, store: ServedStore, tmp_path: Path, name: str, status: int, body: dict
) -> None:
    staff = auth
    data = ota_zip(tmp_path / name, size=1_500_000)
    upload_id = upload(client, staff, name, data)
    before = snapshot(store)
    response = finish(client, staff, upload_id, data)
    assert response.status_code == status, response.text
    assert body.items() <= response.json().items()
    assert client.get(f"{BASE}{upload_id}/", headers=staff).status_code == 404
    after = snapshot(store)
    part = str(store.data / "shipper-uploads" / f"{upload_id}.part")
    assert {k: v for k, v in before.items() if k != part} == after


def test_not_a_zip_is_refused(client: httpx.Client, auth: dict, store: ServedStore) -> None:
    name = "Bliss-v14-bullhead-OFFICIAL-vanilla-20200609.zip"
    data = os.urandom(3000)
    upload_id = upload(client, auth, name, data)
    response = finish(client, auth, upload_id, data)
    assert response.status_code == 400 and response.json()["error"] == "invalid_build"
    assert not (store.repo / "builds/bullhead" / name).exists()


def test_checksum_errors(client: httpx.Client, auth: dict, store: ServedStore, tmp_path: Path) -> None:
    name = "Bliss-v14-bullhead-OFFICIAL-goapps-20200609.zip"
    data = ota_zip(tmp_path / name)
    upload_id = upload(client, auth, name, data)
    wrong = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": "0" * 64})
    assert (wrong.status_code, wrong.json()) == (400, {"detail": "checksum does not match"})
    assert client.get(f"{BASE}{upload_id}/", headers=auth).status_code == 404
    assert f"{upload_id}.part" not in scratch_files(store)
    upload_id = upload(client, auth, name, data)
    missing = client.post(f"{BASE}{upload_id}/", headers=auth, data={})
    assert (missing.status_code, missing.json()) == (400, {"detail": "Checksum of type 'sha256' is required"})
    assert not (store.repo / "builds/bullhead" / name).exists()


def test_expired_uploads_answer_410_and_are_cleaned_up(
    client: httpx.Client, auth: dict, store: ServedStore
) -> None:
    name = "Bliss-v14-bullhead-OFFICIAL-vanilla-20200610.zip"
    upload_id = put(client, auth, name, b"x" * 10, 0, 20).json()["id"]
    with store_database(store.data) as db:
        db.execute(
            "UPDATE shipper_uploads SET created_at = ? WHERE id = ?", [time.time() - 2 * 86400, upload_id]
        )
    response = put(client, auth, name, b"y" * 10, 10, 20, upload_id)
    assert (response.status_code, response.json()) == (410, {"detail": "Upload has expired"})
    assert upload_id not in {u["id"] for u in client.get(BASE, headers=auth).json()}  # listing cleans up
    assert f"{upload_id}.part" not in scratch_files(store)


def test_single_request_upload(client: httpx.Client, auth: dict, store: ServedStore, tmp_path: Path) -> None:
    name = "Bliss-v14-bullhead-OFFICIAL-foss-20200611.zip"
    data = ota_zip(tmp_path / name)
    response = client.post(
        BASE, headers=auth, data={"filename": name, "sha256": sha256(data)}, files={"file": ("file", data)}
    )
    assert response.status_code == 200, response.text
    assert (store.repo / "builds/bullhead" / name).read_bytes() == data
    assert client.get("/api/v1/updater/los/bullhead/foss/").json()["response"][0]["id"] == sha256(data)
