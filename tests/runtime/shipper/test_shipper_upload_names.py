"""Upload names cannot hide or forge anything: the pattern matches the whole name, names hold
only safe characters, no upload becomes another build's sidecar; and chunked uploads are for
maintainers, within a per-account quota (issue: hostile clients)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from builder.build import build
from tests.support.database import store_database
from tests.support.serving import ServedStore
from tests.support.shipper import BULLHEAD, login, make_repo, ota_zip, served_fixtures

BASE = "/api/v1/maintainers/chunked_upload/"
store, client, auth = served_fixtures("shipper-names")


def first_chunk(client: httpx.Client, auth: dict, name: str, data: bytes = b"PK\x05\x06" + bytes(18)):
    headers = {**auth, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}
    return client.put(BASE, headers=headers, data={"filename": name}, files={"file": ("file", data)})


@pytest.mark.parametrize(
    "name",
    [
        f"{BULLHEAD}.zip.toml",  # would have become the sidecar of the build of that name
        f"{BULLHEAD}.zip.sha256",
        "Bliss-v14-bullhead-OFFICIAL-gapps-20200609\n.zip",
        "Bliss-v14-bullhead-OFFICIAL-gapps-\u202e20200609.zip",
        "Bliss v14-bullhead-OFFICIAL-gapps-20200609.zip",
    ],
)
def test_unsafe_upload_names_are_refused_at_the_first_chunk(
    client: httpx.Client, auth: dict, store: ServedStore, name: str
) -> None:
    before = sorted(p.relative_to(store.repo) for p in store.repo.rglob("*"))
    answer = first_chunk(client, auth, name)
    assert answer.status_code == 400
    assert "filename" in answer.json()["detail"]
    assert sorted(p.relative_to(store.repo) for p in store.repo.rglob("*")) == before


def test_the_pattern_matches_the_whole_name(tmp_path: Path) -> None:
    """A name with text around a match is no build: shipper's re.search took it."""
    repo = make_repo(tmp_path / "repo")
    ota_zip(repo / "builds" / "bullhead" / "prefix-Bliss-v14-bullhead-OFFICIAL-gapps-20200610.zip")
    result = build(repo, tmp_path / "site")
    reason = result.skipped["builds/bullhead/prefix-Bliss-v14-bullhead-OFFICIAL-gapps-20200610.zip"]
    assert reason == "The file name is malformed!"


def test_only_maintainers_upload_and_within_a_quota(client: httpx.Client, store: ServedStore) -> None:
    nobody = login(client, "other_user", "password2")  # an account that maintains no device
    refused = first_chunk(client, nobody, "Bliss-v14-bullhead-OFFICIAL-gapps-20200612.zip")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "You do not have permission to perform this action."}
    maintainer = login(client)
    opened = []
    for day in range(12, 20):
        answer = first_chunk(client, maintainer, f"Bliss-v14-bullhead-OFFICIAL-gapps-202006{day}.zip")
        if answer.status_code != 200:
            assert answer.status_code == 400 and "unfinished uploads" in answer.json()["detail"]
            break
        opened.append(answer.json()["id"])
    assert 1 <= len(opened) <= 4
    with store_database(store.data) as db:
        open_rows = db.execute("select count(*) from shipper_uploads where status = 1").fetchone()[0]
    assert open_rows == len(opened)
