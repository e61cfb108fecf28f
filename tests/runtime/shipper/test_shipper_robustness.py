"""shipper dialect: client input that must be a clear 4xx, never a 500 (numbers Python will not
convert, JSON infinity), hand-edited sidecars that enabling/disabling must keep intact, and a
completion that re-checks its upload under the lock."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

import httpx
import pytest

from builder.settings import load_settings
from runtime.errors import ApiError
from runtime.shipper.upload import NOT_FOUND, ChunkedUploads, _complete
from runtime.storage import open_database
from tests.support.database import store_database
from tests.support.serving import ServedStore
from tests.support.shipper import BULLHEAD, ota_zip, served_fixtures, sha256

BASE = "/api/v1/maintainers/chunked_upload/"
MODIFY = "/api/v1/maintainers/build/enabled_status_modify/"
HUGE = "9" * 5000  # more digits than int() converts
JSON = {"Content-Type": "application/json"}


store, client, auth = served_fixtures("shipper-robust")


def bullhead_id() -> int:
    from builder.shipper.ota import derived_build_id

    return derived_build_id("bullhead", f"{BULLHEAD}.zip")


@pytest.mark.parametrize(
    "content_range", [f"bytes 0-9/{HUGE}", f"bytes {HUGE}-{HUGE}/{HUGE}", f"bytes 0-{HUGE}/10"]
)
def test_a_content_range_with_a_huge_number(
    client: httpx.Client, auth: dict[str, str], content_range: str
) -> None:
    response = client.put(
        BASE,
        headers={**auth, "Content-Range": content_range},
        data={"filename": "Bliss-v14-bullhead-OFFICIAL-gapps-20200702.zip"},
        files={"file": ("file", b"0123456789")},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Error in request headers"}


@pytest.mark.parametrize("number", ["1e999", "-1e999", HUGE])
def test_counters_with_a_build_id_that_is_not_a_usable_number(client: httpx.Client, number: str) -> None:
    body = f'{{"build_id": {number}, "download_type": "download"}}'
    for url in ("/api/v2/download/build/counter/", "/api/v1/download/build/counter/"):
        response = client.post(url, content=body.encode(), headers=JSON)
        if number == HUGE:  # the JSON parser itself refuses it: a malformed body
            assert response.status_code == 400, response.text
            continue
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "invalid_build_id"


def test_enabled_status_modify_with_json_infinity(client: httpx.Client, auth: dict[str, str]) -> None:
    body = b'{"build_id": 1e999, "enable": true}'
    response = client.post(MODIFY, content=body, headers={**auth, **JSON})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameters"


def test_enable_disable_keeps_a_hand_edited_sidecar(
    client: httpx.Client, auth: dict[str, str], store: ServedStore
) -> None:
    sidecar = store.repo / "builds/bullhead" / f"{BULLHEAD}.zip.toml"
    sidecar.write_text(
        '# notes\ntags = ["beta", "arm64"]\ntested_on = 2020-06-09\nnote = "bell \\u0007 here"\n'
    )
    off = client.post(MODIFY, headers=auth, data={"build_id": bullhead_id(), "enable": "False"})
    assert off.status_code == 200, off.text
    assert off.json() == {"message": "Successfully disabled the build!"}
    data = tomllib.loads(sidecar.read_text())
    assert data == {
        "tags": ["beta", "arm64"],
        "tested_on": datetime.date(2020, 6, 9),
        "note": "bell \x07 here",
        "enabled": False,
    }
    assert client.get("/api/v1/updater/los/bullhead/gapps/").status_code == 404
    on = client.post(MODIFY, headers=auth, data={"build_id": bullhead_id(), "enable": "True"})
    assert on.json() == {"message": "Successfully enabled the build!"}
    assert tomllib.loads(sidecar.read_text())["tested_on"] == datetime.date(2020, 6, 9)
    assert client.get("/api/v1/updater/los/bullhead/gapps/").status_code == 200


def test_completion_rechecks_the_upload_under_the_lock(
    client: httpx.Client, auth: dict[str, str], store: ServedStore, tmp_path: Path
) -> None:
    name = "Bliss-v14-bullhead-OFFICIAL-gapps-20200703.zip"
    data = ota_zip(tmp_path / name)
    put = client.put(
        BASE,
        headers={**auth, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        data={"filename": name},
        files={"file": ("file", data)},
    )
    assert put.status_code == 200, put.text
    upload_id = put.json()["id"]
    with store_database(store.data) as db:
        stale = db.rows("SELECT * FROM shipper_uploads WHERE id = ?", [upload_id])[0]
    # another request completes it after this one has read the row
    done = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": sha256(data)})
    assert done.status_code == 200, done.text
    assert (store.repo / "builds/bullhead" / name).read_bytes() == data

    ups = ChunkedUploads(open_database(store.data), store.data, store.repo, load_settings(store.repo))
    with pytest.raises(ApiError) as raised:
        _complete(ups, None, stale, sha256(data))  # type: ignore[arg-type]
    assert (raised.value.status, raised.value.body) == (404, {"detail": NOT_FOUND})
