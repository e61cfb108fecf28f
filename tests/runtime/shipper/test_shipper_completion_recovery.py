"""Completion is one step from the client's view: a `depot serve` killed after it marked a chunked
upload complete, before the build reached repo/, publishes it when it starts again, and a client
that retries the completion is answered as the finished upload, not asked to send it again."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.support.database import store_database
from tests.support.serving import serve_store
from tests.support.shipper import NO_THROTTLE, add_user, login, make_repo, ota_zip, sha256

BASE = "/api/v1/maintainers/chunked_upload/"
FEED = "/api/v1/updater/los/bullhead/gapps/"


def _upload_all_but_completion(client: httpx.Client, auth: dict[str, str], name: str, data: bytes) -> str:
    answer = client.put(
        BASE,
        headers={**auth, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
        data={"filename": name},
        files={"file": ("file", data)},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def _mark_complete(data_dir: Path, upload_id: str) -> None:
    """The state a process killed right after marking the upload complete leaves behind."""
    with store_database(data_dir) as db:
        db.execute("UPDATE shipper_uploads SET status = 2, completed_at = 1 WHERE id = ?", [upload_id])


def _feed_names(client: httpx.Client) -> list[str]:
    answer = client.get(FEED)
    return [e["filename"] for e in answer.json().get("response", [])] if answer.status_code == 200 else []


def test_a_restart_publishes_what_a_killed_process_completed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    name = "Bliss-v14.2-bullhead-OFFICIAL-gapps-20200801.zip"
    data = ota_zip(tmp_path / name, size=300_000, seed="recovery")
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as first, first.client() as client:
        upload_id = _upload_all_but_completion(client, login(client), name, data)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    _mark_complete(tmp_path / "var", upload_id)
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as second, second.client() as client:
        assert (repo / "builds" / "bullhead" / name).read_bytes() == data
        assert name in _feed_names(client)
        auth = login(client)
        assert client.get(BASE, headers=auth).json() == []  # the record has done its job
        assert not (tmp_path / "var" / "shipper-uploads" / f"{upload_id}.part").exists()


def test_a_retried_completion_is_answered_as_the_finished_upload(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    name = "Bliss-v14.3-bullhead-OFFICIAL-gapps-20200802.zip"
    data = ota_zip(tmp_path / name, size=300_000, seed="retry")
    with serve_store(tmp_path, repo=repo, env=NO_THROTTLE) as store, store.client() as client:
        auth = login(client)
        upload_id = _upload_all_but_completion(client, auth, name, data)
        _mark_complete(store.data, upload_id)  # as if the answer to the first completion was lost
        retry = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": sha256(data)})
        assert retry.status_code == 200, retry.text
        assert retry.json()["message"] == "Build has been uploaded for device LG Nexus 5X (bullhead)!"
        assert (repo / "builds" / "bullhead" / name).read_bytes() == data
        assert name in _feed_names(client)
        again = client.post(f"{BASE}{upload_id}/", headers=auth, data={"sha256": sha256(data)})
        assert again.status_code == 404  # finished: the upload record is gone, the build stays
